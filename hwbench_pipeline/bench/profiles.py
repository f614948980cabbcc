"""Benchmark profiles: which models, sizes, batches, sequences and precisions a run measures.

A profile is a YAML file. The built-in ones (smoke, quick, full) live in ``hwbench_pipeline/profiles/``;
a path to another YAML file with the same keys works wherever a profile name does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from hwbench_pipeline.bench.trackers.stats import StoppingRule

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
REQUIRED_KEYS = {"families", "presets", "batch_sizes", "seq_lens", "precisions"}
OPTIONAL_KEYS = {"description", "threads", "stopping", "timeout_s"}


class ProfileError(ValueError):
    pass


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    families: tuple[str, ...]
    presets: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    precisions: tuple[str, ...]
    threads: int
    stopping: StoppingRule
    timeout_s: float

    def inference_configs(self, target: str, precisions_available: tuple[str, ...] | None = None) -> list:
        """Every configuration of this profile for one target (model × batch × sequence × precision).

        Families whose input length is fixed by their config get their own length, and text towers are capped
        at their model's maximum (see effective_seq_len); duplicates are dropped.
        Precisions the target cannot run are left out here and listed by :meth:`skipped_precisions`.
        """
        from hwbench_pipeline.bench.scenarios.inference import InferenceConfig

        configs = []
        for family in self.families:
            for preset in self.presets:
                seqs = sorted({effective_seq_len(family, preset, s) for s in self.seq_lens})
                for precision in self.precisions:
                    if precisions_available is not None and precision not in precisions_available:
                        continue
                    for batch in self.batch_sizes:
                        for seq in seqs:
                            configs.append(InferenceConfig(
                                family=family, preset=preset, target=target, batch_size=batch, seq_len=seq,
                                precision=precision, threads=self.threads, rule=self.stopping,
                            ))
        return configs


def effective_seq_len(family: str, preset: str, requested: int) -> int:
    """The sequence length a family runs for a requested text length.

    Families whose input size is fixed by their config (vision, raw audio) use their own default; text
    towers are capped at the positions their model has (CLIP's 77, a RoBERTa tower's n - 2, Whisper's
    decoder). The row records the length that ran, so a cap is visible, never silent.
    """
    from hwbench_pipeline.bench import models

    spec = models.FAMILIES[family]
    if "text tokens" not in spec.sequence_meaning and "decoder" not in spec.sequence_meaning:
        return spec.default_seq_len
    config = models.build_config(family, preset)
    if family == "bert":
        limit = config.max_position_embeddings
    elif family in ("clip", "xclip"):
        limit = config.text_config.max_position_embeddings
    elif family == "clap":
        limit = config.text_config.max_position_embeddings - 2
    elif family == "whisper":
        limit = config.max_target_positions
    else:
        limit = None
    return min(requested, limit) if limit else requested


def _int_list(raw: object, key: str, source: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, int) and v > 0 for v in raw):
        raise ProfileError(f"{source}: '{key}' must be a non-empty list of positive integers, got {raw!r}")
    return tuple(raw)


def _choice_list(raw: object, key: str, accepted: tuple[str, ...], source: str) -> tuple[str, ...]:
    if raw == "all":
        return accepted
    if not isinstance(raw, list) or not raw:
        raise ProfileError(f"{source}: '{key}' must be 'all' or a non-empty list, got {raw!r}")
    unknown = [v for v in raw if v not in accepted]
    if unknown:
        raise ProfileError(f"{source}: unknown {key} {', '.join(map(str, unknown))}; accepted: {', '.join(accepted)}")
    return tuple(raw)


def load_profile(name_or_path: str) -> Profile:
    """Load a built-in profile by name or a YAML file by path; ProfileError says what is wrong."""
    from hwbench_pipeline.bench import models

    path = Path(name_or_path)
    if name_or_path in builtin_profiles():
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    elif not (path.suffix in (".yaml", ".yml") and path.is_file()):
        raise ProfileError(
            f"unknown profile {name_or_path!r}: use one of {', '.join(builtin_profiles())} or a path to a .yaml file"
        )
    source = str(path) if path.parent != PROFILE_DIR else f"profile {path.stem}"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML ({exc.__class__.__name__}: {exc})".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a mapping of keys {', '.join(sorted(REQUIRED_KEYS))}")
    missing = REQUIRED_KEYS - data.keys()
    extra = data.keys() - REQUIRED_KEYS - OPTIONAL_KEYS
    if missing or extra:
        parts = ([f"missing {', '.join(sorted(missing))}"] if missing else []) + (
            [f"unknown keys {', '.join(sorted(extra))}"] if extra else [])
        raise ProfileError(f"{source}: {'; '.join(parts)}; accepted keys: "
                           f"{', '.join(sorted(REQUIRED_KEYS | OPTIONAL_KEYS))}")

    threads_raw = data.get("threads", "all")
    if threads_raw == "all":
        threads = os.cpu_count() or 1
    elif isinstance(threads_raw, int) and threads_raw > 0:
        threads = threads_raw
    else:
        raise ProfileError(f"{source}: 'threads' must be 'all' or a positive integer, got {threads_raw!r}")
    stopping_raw = data.get("stopping", {}) or {}
    try:
        stopping = StoppingRule(**stopping_raw)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{source}: bad 'stopping' section ({exc})") from exc
    timeout = data.get("timeout_s", 600)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ProfileError(f"{source}: 'timeout_s' must be a positive number, got {timeout!r}")

    return Profile(
        name=path.stem,
        description=str(data.get("description", "")),
        families=_choice_list(data["families"], "families", tuple(models.FAMILIES), source),
        presets=_choice_list(data["presets"], "presets", tuple(models.PRESETS), source),
        batch_sizes=_int_list(data["batch_sizes"], "batch_sizes", source),
        seq_lens=_int_list(data["seq_lens"], "seq_lens", source),
        precisions=_choice_list(data["precisions"], "precisions", ("fp32", "bf16", "fp16"), source),
        threads=threads,
        stopping=stopping,
        timeout_s=float(timeout),
    )
