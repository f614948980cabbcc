"""Benchmark profiles: which models, sizes, batches, sequences and precisions a run measures.

A profile is a YAML file. The built-in ones (smoke, quick, full) live in ``hwbench_pipeline/profiles/``;
a path to another YAML file with the same keys works wherever a profile name does.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hwbench_pipeline.bench.precision import FLOAT_PRECISIONS
from hwbench_pipeline.bench.profile_comparisons import ComparisonSpec, ComparisonSpecError, parse_comparisons
from hwbench_pipeline.bench.trackers.stats import StoppingRule, is_finite_number

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
REQUIRED_KEYS = {"families", "presets", "batch_sizes", "seq_lens", "precisions"}
OPTIONAL_KEYS = {"description", "threads", "stopping", "timeout_s", "memory_limit_mb", "training", "distributed",
                 "architectures", "generation", "comparisons", "browsers", "planner"}
BROWSERS_KEYS = {"families", "presets", "batch_sizes", "seq_lens", "stopping"}
PLANNER_KEYS = {"families", "presets", "batch_sizes", "seq_lens", "precisions", "stopping", "budget", "strategy"}
#: ``families: ci-sample`` in a planner section: the coverage sweep's fixed sample of architectures
CI_SAMPLE_WORD = "ci-sample"
ARCHITECTURES_KEYS = {"models", "preset", "batch_size", "seq_len", "timeout_s"}
DISTRIBUTED_REQUIRED_KEYS = {"families", "presets", "strategies", "workers", "batch_size", "seq_len"}
DISTRIBUTED_OPTIONAL_KEYS = {"steps", "warmup_steps", "threads_per_worker", "microbatches", "max_failures",
                             "timeout_s"}
TRAINING_REQUIRED_KEYS = {"families", "presets", "batch_sizes", "seq_lens", "precisions"}
TRAINING_OPTIONAL_KEYS = {"convergence_steps", "convergence_batch", "learning_rate", "target_fraction",
                          "batch_scaling", "stopping", "timeout_s"}
GENERATION_REQUIRED_KEYS = {"families", "presets", "batch_sizes", "prompt_lens", "new_tokens"}
GENERATION_OPTIONAL_KEYS = {"precisions", "caches", "cache_precisions", "residual_length", "stream_clients",
                            "stopping", "timeout_s"}
BATCH_SCALING_KEYS = {"max_batch", "memory_budget_mb", "memory_budget_fraction"}
STOPPING_KEYS = {spec.name for spec in dataclasses.fields(StoppingRule)}
#: the longest timeout a profile (or a command-line option) may set: a measuring process is waited for with
#: poll(), which takes at most INT_MAX milliseconds (about 24.8 days); a longer wait fails with OverflowError
MAX_TIMEOUT_S = 2_147_483


class ProfileError(ValueError):
    pass


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class TrainingProfile:
    """The optional ``training:`` section: which models train, at which batches, and how convergence and the
    batch-size sweep run (see :mod:`hwbench_pipeline.bench.scenarios.training`)."""

    families: tuple[str, ...]
    presets: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    precisions: tuple[str, ...]
    convergence_steps: int
    convergence_batch: int | None  # None: the largest listed batch
    learning_rate: float | None  # None: the preset's default
    target_fraction: float
    max_batch: int  # the sweep doubles the largest listed batch up to this (= largest listed: no sweep)
    memory_budget_mb: float | None
    memory_budget_fraction: float
    stopping: StoppingRule
    timeout_s: float


@dataclass(frozen=True)
class ArchitecturesProfile:
    """The optional ``architectures:`` section: the coverage sweep (docs/catalog.md). ``models`` is ``all`` (every
    architecture of the installed transformers), ``sample`` (the fixed CI sample) or a list of model types."""

    models: tuple[str, ...]
    preset: str
    batch_size: int
    seq_len: int
    timeout_s: float

    def probes_for(self, target: str) -> list:
        from hwbench_pipeline.bench.catalog.probe import ProbeConfig

        return [ProbeConfig(m, preset=self.preset, target=target, batch_size=self.batch_size, seq_len=self.seq_len)
                for m in self.models]


def _architectures_section(raw: object, source: str, timeout: float) -> ArchitecturesProfile:
    from hwbench_pipeline.bench.catalog.registry import architectures
    from hwbench_pipeline.bench.catalog.sample import CI_SAMPLE
    from hwbench_pipeline.bench.catalog.scaling import SCALED_PRESETS

    source = f"{source}: architectures"
    if not isinstance(raw, dict) or "models" not in raw or raw.keys() - ARCHITECTURES_KEYS:
        raise ProfileError(f"{source}: expected a mapping with 'models' and keys among "
                           f"{_names(sorted(ARCHITECTURES_KEYS))}, got {raw!r}")
    registry = tuple(architectures())
    models = raw["models"]
    if models == "sample":
        chosen = tuple(CI_SAMPLE)
    else:
        chosen = _choice_list(models, "models", registry, source) if models == "all" or isinstance(models, list) \
            else None
        if chosen is None:
            raise ProfileError(f"{source}: 'models' must be 'all', 'sample' or a list of model types, got {models!r}")
    preset = raw.get("preset", "tiny")
    if preset not in SCALED_PRESETS:
        raise ProfileError(f"{source}: 'preset' must be one of {', '.join(SCALED_PRESETS)}, got {preset!r}")
    return ArchitecturesProfile(
        models=chosen, preset=preset,
        batch_size=_number(raw.get("batch_size", 1), "batch_size", source, integer=True),
        seq_len=_number(raw.get("seq_len", 16), "seq_len", source, integer=True),
        timeout_s=_timeout(raw.get("timeout_s", min(timeout, 300)), source),
    )


@dataclass(frozen=True)
class InferenceGrid:
    """What one group of targets measures in the inference scenario: model x preset x batch x sequence x precision
    under a stopping rule."""

    families: tuple[str, ...]
    presets: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    precisions: tuple[str, ...]
    stopping: StoppingRule


def _browsers_section(raw: object, source: str, base: InferenceGrid) -> InferenceGrid:
    """The optional ``browsers:`` section: the browser targets' own inference grid (a page loads each model
    afresh and WebGPU may be a software device, so the whole grid can cost too much there); keys it leaves out
    are the profile's. Its precisions are the profile's: those a browser does not run (all but fp32 so far)
    become rows saying so, as on any target."""
    from hwbench_pipeline.bench import models

    source = f"{source}: browsers"
    if not isinstance(raw, dict) or raw.keys() - BROWSERS_KEYS:
        raise ProfileError(f"{source}: expected a mapping with keys among {_names(sorted(BROWSERS_KEYS))}, got {raw!r}")
    return InferenceGrid(
        families=_model_list(raw["families"], source) if "families" in raw else base.families,
        presets=_choice_list(raw["presets"], "presets", tuple(models.PRESETS), source)
        if "presets" in raw else base.presets,
        batch_sizes=_int_list(raw["batch_sizes"], "batch_sizes", source) if "batch_sizes" in raw else base.batch_sizes,
        seq_lens=_int_list(raw["seq_lens"], "seq_lens", source) if "seq_lens" in raw else base.seq_lens,
        precisions=base.precisions,
        stopping=_stopping_rule(raw.get("stopping"), base.stopping, source),
    )


@dataclass(frozen=True)
class PlannerProfile:
    """The ``planner:`` section: the candidate space the benchmark planner chooses from (its axes over the
    catalog), the budget per target it may spend each round, and its strategy (docs/planner.md)."""

    space: InferenceGrid
    budget: str  # predict/planner.py parse_budget: "20" configurations, or machine time "10m"
    strategy: str


def _planner_section(raw: object, source: str, base: InferenceGrid) -> PlannerProfile:
    """Keys it leaves out are the profile's; ``families: ci-sample`` is the coverage sweep's fixed sample."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.catalog.sample import CI_SAMPLE
    from hwbench_pipeline.predict.planner import STRATEGIES, PlanError, parse_budget

    source = f"{source}: planner"
    if not isinstance(raw, dict) or raw.keys() - PLANNER_KEYS:
        raise ProfileError(f"{source}: expected a mapping with keys among {_names(sorted(PLANNER_KEYS))}, got {raw!r}")
    families = raw.get("families", base.families)
    if families == CI_SAMPLE_WORD:
        families = list(CI_SAMPLE)
    budget = str(raw.get("budget", "10"))
    try:
        parse_budget(budget)
    except PlanError as exc:
        raise ProfileError(f"{source}: {exc}") from exc
    strategy = raw.get("strategy", "committee")
    if strategy not in STRATEGIES:
        raise ProfileError(f"{source}: strategy {strategy!r} is none of {_names(list(STRATEGIES))}")
    return PlannerProfile(
        space=InferenceGrid(
            families=_model_list(families, source) if "families" in raw else base.families,
            presets=_choice_list(raw["presets"], "presets", tuple(models.PRESETS), source)
            if "presets" in raw else base.presets,
            batch_sizes=_int_list(raw["batch_sizes"], "batch_sizes", source) if "batch_sizes" in raw
            else base.batch_sizes,
            seq_lens=_int_list(raw["seq_lens"], "seq_lens", source) if "seq_lens" in raw else base.seq_lens,
            precisions=_precision_list(raw["precisions"], source) if "precisions" in raw else base.precisions,
            stopping=_stopping_rule(raw.get("stopping"), base.stopping, source)),
        budget=budget, strategy=strategy)


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
    training: TrainingProfile | None = None
    distributed: DistributedProfile | None = None
    architectures: ArchitecturesProfile | None = None
    generation: GenerationProfile | None = None
    #: pairs of configurations measured interleaved (bench/profile_comparisons.py)
    comparisons: tuple[ComparisonSpec, ...] = ()
    #: each measuring process's memory limit (MiB); past it the configuration is an out_of_memory row. None: none
    memory_limit_mb: float | None = None
    #: where trained task-model weights are kept (bench/trained.py): training keeps its fp32 weights there and
    #: inference measures the task accuracy each precision costs with them. None: neither
    trained_dir: str | None = None
    #: the browser targets' inference grid (the ``browsers:`` section); None: the profile's own
    browsers: InferenceGrid | None = None
    #: the benchmark planner's candidate space, budget and strategy (the ``planner:`` section); None: the
    #: profile's own grid, 10 configurations per target, the committee
    planner: PlannerProfile | None = None

    @property
    def inference_grid(self) -> InferenceGrid:
        return InferenceGrid(self.families, self.presets, self.batch_sizes, self.seq_lens, self.precisions,
                             self.stopping)

    def grid_for(self, target: str) -> InferenceGrid:
        """The inference grid ``target`` measures: the ``browsers:`` section's on a browser target."""
        from hwbench_pipeline.bench.hardware import BROWSER_DEVICE, TARGET_KEY

        match = TARGET_KEY.match(target)  # an unknown key (a stale partition) is refused by whoever measures it
        if self.browsers is not None and match is not None and match["device"] == BROWSER_DEVICE:
            return self.browsers
        return self.inference_grid

    def planner_section(self) -> PlannerProfile:
        """The planner's section, or the profile's own grid with the defaults."""
        return self.planner or PlannerProfile(space=self.inference_grid, budget="10", strategy="committee")

    def with_trained_dir(self, path: str | Path) -> Profile:
        return replace(self, trained_dir=str(path))

    def architecture_probes(self, target: str) -> list:
        """The coverage sweep's probes for one target; empty without an ``architectures:`` section."""
        return self.architectures.probes_for(target) if self.architectures else []

    def distributed_configs(self, target: str) -> list:
        """Every distributed configuration of this profile for one target (model × strategy × workers, fewest
        workers first: the 1-worker run is the scaling baseline); empty without a ``distributed:`` section."""
        return self.distributed.configs_for(target) if self.distributed else []

    def training_configs(self, target: str) -> list:
        """Every training configuration of this profile for one target, each sweep in increasing batch order
        (model × sequence × precision × batch, the batches extended up to ``max_batch``); empty without a
        ``training:`` section. Precisions the target cannot run are included: the caller refuses them."""
        from hwbench_pipeline.bench.scenarios.training import TrainingConfig, sweep_configs

        spec = self.training
        if spec is None:
            return []
        configs = []
        for family in spec.families:
            for preset in spec.presets:
                for seq in sorted({effective_seq_len(family, preset, s) for s in spec.seq_lens}):
                    for precision in spec.precisions:
                        base = TrainingConfig(
                            family=family, preset=preset, target=target, batch_size=min(spec.batch_sizes),
                            seq_len=seq, precision=precision, threads=self.threads, rule=spec.stopping,
                            convergence_steps=spec.convergence_steps, learning_rate=spec.learning_rate,
                            target_fraction=spec.target_fraction, memory_budget_mb=spec.memory_budget_mb,
                            memory_budget_fraction=spec.memory_budget_fraction,
                            keep_weights_dir=self.trained_dir,
                        )
                        configs += sweep_configs(base, spec.batch_sizes, spec.max_batch, spec.convergence_batch)
        return configs

    def generation_configs(self, target: str, caches: tuple[str, ...]) -> list:
        """Every generation configuration of this profile for one target whose backend offers ``caches`` (its
        default first): model × prompt × batch × precision × cache × cache precision; empty without a
        ``generation:`` section. The section's caches the backend does not offer are left out; where it offers
        none of them, its default runs. Precisions and cache precisions are the caller's to refuse."""
        from hwbench_pipeline.bench.kv_quality import DECODER_SUBDIR as KV_QUALITY_DIR
        from hwbench_pipeline.bench.scenarios.generation import DEFAULT_CACHE, GenerationConfig

        spec = self.generation
        if spec is None:
            return []
        chosen = tuple(c for c in spec.caches if c in caches) or caches[:1]
        if spec.caches == (DEFAULT_CACHE,):
            chosen = caches[:1]
        return [
            GenerationConfig(family=family, preset=preset, target=target, batch_size=batch, seq_len=prompt,
                             new_tokens=spec.new_tokens, precision=precision, quantization=quantization,
                             cache=cache, cache_precision=kv, residual_length=spec.residual_length,
                             threads=self.threads, rule=spec.stopping, stream_clients=spec.stream_clients,
                             quality_dir=str(Path(self.trained_dir) / KV_QUALITY_DIR) if self.trained_dir else None)
            for family in spec.families for preset in spec.presets for prompt in spec.prompt_lens
            for batch in spec.batch_sizes for precision, quantization in map(_parse_spec, spec.precisions)
            for cache in chosen for kv in spec.cache_precisions
        ]

    def trained_weights(self) -> dict[str, dict[str, str]]:
        """family -> preset -> the file of weights the training scenario kept for it (of the config the family
        builds now), for the profile's families that have one: curated families only, the ones with a task."""
        if not self.trained_dir:
            return {}
        from hwbench_pipeline.bench import models
        from hwbench_pipeline.bench.config_key import model_config_hash
        from hwbench_pipeline.bench.trained import weights_path

        found: dict[str, dict[str, str]] = {}
        for family in filter(models.is_curated, self.families):
            for preset in self.presets:
                path = weights_path(Path(self.trained_dir), family, preset, model_config_hash(family, preset))
                if path.is_file():
                    found.setdefault(family, {})[preset] = str(path)
        return found

    def inference_configs(self, target: str, precisions_available: tuple[str, ...] | None = None) -> list:
        """Every configuration of this profile for one target (model × batch × sequence × precision).

        Families whose input length is fixed by their config get their own length, and text towers are capped
        at their model's maximum (see effective_seq_len); duplicates are dropped.
        Precisions the target cannot run are left out here and listed by :meth:`skipped_precisions`.
        """
        from hwbench_pipeline.bench.precision import parse_spec
        from hwbench_pipeline.bench.scenarios.inference import InferenceConfig

        trained = self.trained_weights()
        grid = self.grid_for(target)
        configs = []
        for family in grid.families:
            for preset in grid.presets:
                seqs = sorted({effective_seq_len(family, preset, s) for s in grid.seq_lens})
                for spec in grid.precisions:
                    if precisions_available is not None and spec not in precisions_available:
                        continue
                    precision, quantization = parse_spec(spec)
                    weights = trained.get(family, {}).get(preset)
                    for batch in grid.batch_sizes:
                        for seq in seqs:
                            # task accuracy belongs to the model, precision and runtime, not to the shape: it
                            # is scored once, with the first shape (scoring exports the task model again)
                            first = (batch, seq) == (grid.batch_sizes[0], seqs[0])
                            configs.append(InferenceConfig(
                                family=family, preset=preset, target=target, batch_size=batch, seq_len=seq,
                                precision=precision, quantization=quantization, threads=self.threads,
                                rule=grid.stopping, trained_weights=weights if first else None,
                            ))
        return configs


def effective_seq_len(family: str, preset: str, requested: int) -> int:
    """The sequence length a family runs for a requested text length.

    Families whose input size is fixed by their config (vision, raw audio) use their own default; text
    towers are capped at the positions their model has (CLIP's 77, a RoBERTa tower's n - 2, Whisper's
    decoder). The row records the length that ran, so a cap is visible, never silent.
    """
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.catalog.curated import curated

    if not models.is_curated(family):
        return _architecture_seq_len(family, preset, requested)
    spec = models.FAMILIES[family]
    if "text tokens" not in spec.sequence_meaning and "decoder" not in spec.sequence_meaning:
        return spec.default_seq_len
    limit = curated(family).text_limit(models.build_config(family, preset))
    return min(requested, limit) if limit else requested


def _architecture_seq_len(model: str, preset: str, requested: int) -> int:
    """Any other architecture: 1 where it takes no text, else the requested length capped at its text positions."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.catalog.registry import architecture
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    if architecture(resolve_model(model).model_type).category in models.NON_TEXT_CATEGORIES:
        return 1
    from hwbench_pipeline.bench.catalog.scaling import config_text_tower

    text = config_text_tower(models.build_config(model, preset))
    limit = getattr(text, "max_position_embeddings", None)
    return min(requested, limit) if isinstance(limit, int) and limit > 0 else requested


def _names(values: object) -> str:
    """Values for a one-line message: plain names as they are, anything else (a newline, a list) as its repr."""
    return ", ".join(v if isinstance(v, str) and v.isprintable() else repr(v) for v in values)


def _check_keys(raw: dict, required: set[str], optional: set[str], source: str) -> None:
    missing, extra = required - raw.keys(), raw.keys() - required - optional
    if missing or extra:
        parts = ([f"missing {_names(sorted(missing))}"] if missing else []) + (
            [f"unknown keys {_names(sorted(extra, key=str))}"] if extra else [])
        raise ProfileError(f"{source}: {'; '.join(parts)}; accepted keys: {_names(sorted(required | optional))}")


def _no_duplicates(values: list, key: str, source: str) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        raise ProfileError(f"{source}: '{key}' lists {_names(repeated)} more than once, got {values!r}")


def _int_list(raw: object, key: str, source: str) -> tuple[int, ...]:
    """A non-empty list of distinct positive integers (booleans are not integers here)."""
    if not isinstance(raw, list) or not raw or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw):
        raise ProfileError(f"{source}: '{key}' must be a non-empty list of positive integers, got {raw!r}")
    _no_duplicates(raw, key, source)
    return tuple(raw)


def _choice_list(raw: object, key: str, accepted: tuple[str, ...], source: str) -> tuple[str, ...]:
    if raw == "all":
        return accepted
    if not isinstance(raw, list) or not raw:
        raise ProfileError(f"{source}: '{key}' must be 'all' or a non-empty list, got {raw!r}")
    unknown = [v for v in raw if v not in accepted]
    if unknown:
        raise ProfileError(f"{source}: unknown {key} {_names(unknown)}; accepted: {', '.join(accepted)}")
    _no_duplicates(raw, key, source)
    return tuple(raw)


def _precision_list(raw: object, source: str) -> tuple[str, ...]:
    """The inference section's precisions as canonical specs (``int8`` is ``int8-dynamic``; bench/precision.py)."""
    from hwbench_pipeline.bench.precision import SPECS, canonical_spec, unknown_spec_reason

    if raw == "all":
        return SPECS
    if not isinstance(raw, list) or not raw:
        raise ProfileError(f"{source}: 'precisions' must be 'all' or a non-empty list, got {raw!r}")
    unknown = [v for v in raw if not isinstance(v, str) or unknown_spec_reason(v)]
    if unknown:
        raise ProfileError(f"{source}: unknown precisions {_names(unknown)}; accepted: {', '.join(SPECS)} "
                           "(int8 = int8-dynamic)")
    specs = [canonical_spec(v) for v in raw]
    _no_duplicates(specs, "precisions", source)
    return tuple(specs)


def _model_list(raw: object, source: str) -> tuple[str, ...]:
    """The inference section's models: ``all`` curated families, or a list of curated families, transformers model
    types, config files and checkpoint folders (docs/catalog.md)."""
    from hwbench_pipeline.bench import models

    if raw == "all" or (isinstance(raw, list) and raw and all(isinstance(v, str) and v in models.FAMILIES
                                                              for v in raw)):
        return _choice_list(raw, "families", tuple(models.FAMILIES), source)
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        raise ProfileError(f"{source}: 'families' must be 'all' or a non-empty list of names, got {raw!r}")
    _no_duplicates(raw, "families", source)
    from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
    from hwbench_pipeline.bench.catalog.sources import ModelSourceError, resolve_model

    unknown = []
    for value in raw:
        try:
            resolve_model(value)
        except (UnknownArchitectureError, ModelSourceError):
            unknown.append(value)
        except RuntimeError:  # "~name/..." of a user this host does not have (Path.expanduser)
            unknown.append(value)
    if unknown:
        raise ProfileError(f"{source}: unknown families {_names(unknown)}; accepted: {', '.join(models.FAMILIES)}, "
                           "any transformers model type, a config.json or a checkpoint folder")
    return tuple(raw)


def _generative_list(raw: object, source: str) -> tuple[str, ...]:
    """The generation section's models: ``all`` curated generative families, or a list of models (as the
    inference section takes them) each of which generates tokens."""
    from hwbench_pipeline.bench import models

    if raw == "all":
        return tuple(name for name, spec in models.FAMILIES.items() if spec.generates_tokens)
    names = _model_list(raw, source)
    silent = [name for name in names if not models.generates_tokens(name)]
    if silent:
        verb = "does" if len(silent) == 1 else "do"
        raise ProfileError(f"{source}: {_names(silent)} {verb} not generate tokens; generative models: "
                           f"{models.generative_names()}")
    return names


def _number(raw: object, key: str, source: str, *, low: float = 0.0, high: float | None = None,
            integer: bool = False, low_included: bool = False) -> Any:
    """``raw`` if it is a number above ``low`` (or at it, with ``low_included``) and at most ``high``; else
    ProfileError naming the key and the value. Booleans, NaN and infinities are refused, and so are integers
    too large for a float where a float is read."""
    valid = (isinstance(raw, int) and not isinstance(raw, bool)) if integer else is_finite_number(raw)
    if valid and (raw < low or (raw == low and not low_included) or (high is not None and raw > high)):
        valid = False
    if not valid:
        above = f">= {low:.15g}" if low_included else f"> {low:.15g}"
        bound = f"{above} and <= {high:.15g}" if high is not None else above
        raise ProfileError(f"{source}: '{key}' must be {'an integer' if integer else 'a number'} {bound}, got {raw!r}")
    return raw


def _timeout(raw: object, source: str) -> float:
    return float(_number(raw, "timeout_s", source, high=MAX_TIMEOUT_S))


def _stopping_rule(raw: object, base: StoppingRule, source: str) -> StoppingRule:
    """``base`` with the ``stopping:`` section's settings; StoppingRule itself checks them (one place of truth)."""
    if raw is None:
        return base
    if not isinstance(raw, dict) or raw.keys() - STOPPING_KEYS:
        raise ProfileError(f"{source}: 'stopping' must be a mapping with keys among {_names(sorted(STOPPING_KEYS))}, "
                           f"got {raw!r}")
    try:
        return dataclasses.replace(base, **raw)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{source}: bad 'stopping' section ({exc})") from exc


def _training_section(raw: object, source: str, stopping: StoppingRule, timeout: float) -> TrainingProfile:
    """Parse the optional ``training:`` section; ProfileError names the bad key."""
    from hwbench_pipeline.bench import models

    source = f"{source}: training"
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: expected a mapping of keys {', '.join(sorted(TRAINING_REQUIRED_KEYS))}")
    _check_keys(raw, TRAINING_REQUIRED_KEYS, TRAINING_OPTIONAL_KEYS, source)
    batch_sizes = _int_list(raw["batch_sizes"], "batch_sizes", source)
    scaling = raw.get("batch_scaling")
    scaling = {} if scaling is None else scaling
    if not isinstance(scaling, dict) or scaling.keys() - BATCH_SCALING_KEYS:
        raise ProfileError(f"{source}: 'batch_scaling' must be a mapping with keys among "
                           f"{', '.join(sorted(BATCH_SCALING_KEYS))}, got {scaling!r}")
    max_batch = _number(scaling.get("max_batch", max(batch_sizes)), "batch_scaling.max_batch", source, integer=True)
    if max_batch < max(batch_sizes):
        raise ProfileError(f"{source}: 'batch_scaling.max_batch' {max_batch} is below the largest batch size "
                           f"{max(batch_sizes)}")
    budget_mb = scaling.get("memory_budget_mb")
    if budget_mb is not None:
        _number(budget_mb, "batch_scaling.memory_budget_mb", source)
    convergence_batch = raw.get("convergence_batch")
    if convergence_batch is not None and _number(convergence_batch, "convergence_batch", source,
                                                 integer=True) not in batch_sizes:
        raise ProfileError(f"{source}: 'convergence_batch' {convergence_batch!r} must be one of the batch_sizes "
                           f"{list(batch_sizes)}")
    convergence_steps = _number(raw.get("convergence_steps", 0), "convergence_steps", source, integer=True,
                                low_included=True)
    learning_rate = raw.get("learning_rate")
    if learning_rate is not None:
        _number(learning_rate, "learning_rate", source, high=1.0)
    stopping = _stopping_rule(raw.get("stopping"), stopping, source)
    return TrainingProfile(
        families=_choice_list(raw["families"], "families", tuple(models.FAMILIES), source),
        presets=_choice_list(raw["presets"], "presets", tuple(models.PRESETS), source),
        batch_sizes=batch_sizes,
        seq_lens=_int_list(raw["seq_lens"], "seq_lens", source),
        precisions=_choice_list(raw["precisions"], "precisions", FLOAT_PRECISIONS, source),
        convergence_steps=convergence_steps,
        convergence_batch=convergence_batch,
        learning_rate=float(learning_rate) if learning_rate is not None else None,
        target_fraction=float(_number(raw.get("target_fraction", 0.5), "target_fraction", source, high=0.999)),
        max_batch=max_batch,
        memory_budget_mb=float(budget_mb) if budget_mb is not None else None,
        memory_budget_fraction=float(_number(scaling.get("memory_budget_fraction", 0.5),
                                             "batch_scaling.memory_budget_fraction", source, high=1.0)),
        stopping=stopping,
        timeout_s=_timeout(raw.get("timeout_s", timeout), source),
    )


@dataclass(frozen=True)
class GenerationProfile:
    """The optional ``generation:`` section: which generative models decode, from which prompt lengths, how many
    new tokens, with which caches (see :mod:`hwbench_pipeline.bench.scenarios.generation`)."""

    families: tuple[str, ...]
    presets: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    prompt_lens: tuple[int, ...]
    new_tokens: int
    precisions: tuple[str, ...]
    caches: tuple[str, ...]
    cache_precisions: tuple[str, ...]
    residual_length: int
    stream_clients: tuple[int, ...]  # empty: not streamed
    stopping: StoppingRule
    timeout_s: float


def _parse_spec(spec: str) -> tuple[str, str]:
    from hwbench_pipeline.bench.precision import parse_spec

    return parse_spec(spec)


def _generation_stopping(raw: object, base: StoppingRule, source: str) -> StoppingRule:
    """The section's stopping rule; processes are refused by name: a generation configuration's sequences are
    measured in one process (a second would only repeat the build and the reference)."""
    spread = sorted({"processes", "max_processes"} & set(raw)) if isinstance(raw, dict) else []
    if spread:
        raise ProfileError(f"{source}: 'stopping' cannot set {', '.join(spread)} in a generation section: each "
                           "configuration is measured in one process")
    return _stopping_rule(raw, base, source)


def _generation_section(raw: object, source: str, timeout: float) -> GenerationProfile:
    """Parse the optional ``generation:`` section; ProfileError names the bad key."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.scenarios.generation import (
        CACHE_NAMES,
        CACHE_PRECISIONS,
        DEFAULT_CACHE,
        GENERATION_RULE,
        MODEL_CACHE_PRECISION,
    )

    source = f"{source}: generation"
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: expected a mapping of keys {', '.join(sorted(GENERATION_REQUIRED_KEYS))}")
    _check_keys(raw, GENERATION_REQUIRED_KEYS, GENERATION_OPTIONAL_KEYS, source)
    return GenerationProfile(
        families=_generative_list(raw["families"], source),
        presets=_choice_list(raw["presets"], "presets", tuple(models.PRESETS), source),
        batch_sizes=_int_list(raw["batch_sizes"], "batch_sizes", source),
        prompt_lens=_int_list(raw["prompt_lens"], "prompt_lens", source),
        new_tokens=_number(raw["new_tokens"], "new_tokens", source, integer=True),
        precisions=_precision_list(raw.get("precisions", ["fp32"]), source),
        caches=_choice_list(raw.get("caches", [DEFAULT_CACHE]), "caches", (DEFAULT_CACHE, *CACHE_NAMES), source),
        cache_precisions=_choice_list(raw.get("cache_precisions", [MODEL_CACHE_PRECISION]), "cache_precisions",
                                      CACHE_PRECISIONS, source),
        residual_length=_number(raw.get("residual_length", 0), "residual_length", source, integer=True,
                                low_included=True),
        stream_clients=_int_list(raw["stream_clients"], "stream_clients", source) if "stream_clients" in raw else (),
        stopping=_generation_stopping(raw.get("stopping"), GENERATION_RULE, source),
        timeout_s=_timeout(raw.get("timeout_s", timeout), source),
    )


@dataclass(frozen=True)
class DistributedProfile:
    """The optional ``distributed:`` section: which models train on Ray Train with which strategies and worker
    counts (see :mod:`hwbench_pipeline.bench.scenarios.distributed`). ``batch_size`` is the global batch."""

    families: tuple[str, ...]
    presets: tuple[str, ...]
    strategies: tuple[str, ...]
    workers: tuple[int, ...]
    batch_size: int
    seq_len: int
    steps: int
    warmup_steps: int
    threads_per_worker: int
    microbatches: int
    max_failures: int
    timeout_s: float

    def configs_for(self, target: str) -> list:
        from hwbench_pipeline.bench.scenarios.distributed import DistributedConfig

        return [
            DistributedConfig(
                family=family, preset=preset, target=target, strategy=strategy, workers=workers,
                batch_size=self.batch_size, seq_len=effective_seq_len(family, preset, self.seq_len),
                threads=self.threads_per_worker, steps=self.steps, warmup_steps=self.warmup_steps,
                microbatches=self.microbatches, max_failures=self.max_failures, timeout_s=self.timeout_s,
            )
            for family in self.families for preset in self.presets for strategy in self.strategies
            for workers in sorted(self.workers)
        ]


def _distributed_section(raw: object, source: str, timeout: float) -> DistributedProfile:
    """Parse the optional ``distributed:`` section; ProfileError names the bad key or configuration.

    ``threads_per_worker: auto`` gives each worker this host's cores divided by the largest worker count, so
    every worker count of the sweep runs equal workers (and the largest one fills the host)."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.scenarios.distributed import STRATEGIES

    source = f"{source}: distributed"
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: expected a mapping of keys {', '.join(sorted(DISTRIBUTED_REQUIRED_KEYS))}")
    _check_keys(raw, DISTRIBUTED_REQUIRED_KEYS, DISTRIBUTED_OPTIONAL_KEYS, source)
    workers = _int_list(raw["workers"], "workers", source)
    threads = raw.get("threads_per_worker", "auto")
    if threads == "auto":
        threads = max(1, (os.cpu_count() or 1) // max(workers))
    spec = DistributedProfile(
        families=_choice_list(raw["families"], "families", tuple(models.FAMILIES), source),
        presets=_choice_list(raw["presets"], "presets", tuple(models.PRESETS), source),
        strategies=_choice_list(raw["strategies"], "strategies", STRATEGIES, source),
        workers=workers,
        batch_size=_number(raw["batch_size"], "batch_size", source, integer=True),
        seq_len=_number(raw["seq_len"], "seq_len", source, integer=True),
        steps=_number(raw.get("steps", 20), "steps", source, low=2, integer=True),
        warmup_steps=_number(raw.get("warmup_steps", 3), "warmup_steps", source, integer=True, low_included=True),
        threads_per_worker=_number(threads, "threads_per_worker", source, integer=True),
        microbatches=_number(raw.get("microbatches", 4), "microbatches", source, integer=True),
        max_failures=_number(raw.get("max_failures", 1), "max_failures", source, integer=True, low_included=True),
        timeout_s=_timeout(raw.get("timeout_s", timeout), source),
    )
    try:
        spec.configs_for("cpu-torch")  # the configurations' own checks: divisible batches, ...
    except ValueError as exc:
        raise ProfileError(f"{source}: {exc}") from exc
    return spec


def _comparisons_section(raw: object, source: str) -> tuple[ComparisonSpec, ...]:
    if raw is None:
        return ()
    try:
        return parse_comparisons(raw, source)
    except ComparisonSpecError as exc:
        raise ProfileError(str(exc)) from None


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
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{source}: cannot be read ({exc})".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a mapping of keys {', '.join(sorted(REQUIRED_KEYS))}")
    _check_keys(data, REQUIRED_KEYS, OPTIONAL_KEYS, source)

    threads_raw = data.get("threads", "all")
    if threads_raw == "all":
        threads = os.cpu_count() or 1
    elif isinstance(threads_raw, int) and not isinstance(threads_raw, bool) and threads_raw > 0:
        threads = threads_raw
    else:
        raise ProfileError(f"{source}: 'threads' must be 'all' or a positive integer, got {threads_raw!r}")
    stopping = _stopping_rule(data.get("stopping"), StoppingRule(), source)
    timeout = _timeout(data.get("timeout_s", 600), source)

    presets = _choice_list(data["presets"], "presets", tuple(models.PRESETS), source)
    checkpoints = [f for f in _model_list(data["families"], source) if Path(f).is_dir()]
    if checkpoints and set(presets) != {"full"}:
        raise ProfileError(f"{source}: {', '.join(checkpoints)} run with their own weights at their own size: give "
                           "checkpoint folders a profile with presets: [full]")
    profile = Profile(
        name=path.stem,
        description=str(data.get("description", "")),
        families=_model_list(data["families"], source),
        presets=_choice_list(data["presets"], "presets", tuple(models.PRESETS), source),
        batch_sizes=_int_list(data["batch_sizes"], "batch_sizes", source),
        seq_lens=_int_list(data["seq_lens"], "seq_lens", source),
        precisions=_precision_list(data["precisions"], source),
        threads=threads,
        stopping=stopping,
        timeout_s=timeout,
        training=_training_section(data["training"], source, stopping, timeout) if "training" in data else None,
        distributed=_distributed_section(data["distributed"], source, timeout) if "distributed" in data else None,
        architectures=_architectures_section(data["architectures"], source, timeout)
        if "architectures" in data else None,
        generation=_generation_section(data["generation"], source, timeout) if "generation" in data else None,
        comparisons=_comparisons_section(data.get("comparisons"), source),
        memory_limit_mb=float(_number(data["memory_limit_mb"], "memory_limit_mb", source, low=16))
        if data.get("memory_limit_mb") is not None else None,
    )
    if "browsers" in data:
        profile = replace(profile, browsers=_browsers_section(data["browsers"], source, profile.inference_grid))
    if "planner" in data:
        profile = replace(profile, planner=_planner_section(data["planner"], source, profile.inference_grid))
    return profile
