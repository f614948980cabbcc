"""A profile's optional ``comparisons:`` section: pairs of inference configurations (two targets, or two precisions
on one target) measured interleaved by fresh processes and tested pair by pair (bench/compare.py).

    comparisons:
      - model: bert
        preset: small
        batch_size: 1
        seq_len: 128
        targets: [cpu-torch, cpu-onnxruntime]   # or precisions: [fp32, bf16] (with target: cpu-torch)
        pairs: 6                                 # a verdict needs 6 undisturbed pairs
        seconds_per_process: 0.5
"""

from __future__ import annotations

from dataclasses import dataclass

from hwbench_pipeline.bench.trackers.paired import DEFAULT_THRESHOLD
from hwbench_pipeline.bench.trackers.stats import StoppingRule

REQUIRED_KEYS = {"model", "preset", "batch_size", "seq_len"}
OPTIONAL_KEYS = {"targets", "target", "precisions", "precision", "pairs", "seconds_per_process", "threshold"}
DEFAULT_PAIRS = 6
DEFAULT_SECONDS_PER_PROCESS = 0.5
MAX_PAIRS = 1000
MAX_SECONDS = 3600.0
MAX_SHAPE = 1 << 20  # batch and sequence: far past any model, and within what a float and torch hold


class ComparisonSpecError(ValueError):
    """A comparison of the section is malformed; the message names it and the key."""


@dataclass(frozen=True)
class ComparisonSpec:
    """One comparison: side A and side B differ by target or by precision, nothing else."""

    model: str
    preset: str
    batch_size: int
    seq_len: int
    targets: tuple[str, str]  # equal when the sides differ by precision
    precisions: tuple[str, str]  # canonical specs; equal when the sides differ by target
    pairs: int = DEFAULT_PAIRS
    seconds_per_process: float = DEFAULT_SECONDS_PER_PROCESS
    threshold: float = DEFAULT_THRESHOLD

    @property
    def labels(self) -> tuple[str, str]:
        return self.targets if self.targets[0] != self.targets[1] else self.precisions

    def configs(self, threads: int) -> tuple:
        """The two sides' inference configurations, each measured one window per process."""
        from hwbench_pipeline.bench.precision import parse_spec
        from hwbench_pipeline.bench.scenarios.inference import InferenceConfig

        rule = StoppingRule(max_seconds=self.seconds_per_process, processes=1, max_processes=1)
        sides = []
        for target, spec in zip(self.targets, self.precisions, strict=True):
            precision, quantization = parse_spec(spec)
            sides.append(InferenceConfig(family=self.model, preset=self.preset, target=target,
                                         batch_size=self.batch_size, seq_len=self.seq_len, precision=precision,
                                         quantization=quantization, threads=threads, rule=rule))
        return tuple(sides)


def _pair(raw: dict, plural: str, singular: str, default: str | None, where: str) -> tuple[str, str]:
    """Two values from ``plural`` (a list of two), or the same value twice from ``singular``."""
    if plural in raw and singular in raw:
        raise ComparisonSpecError(f"{where}: give '{plural}' or '{singular}', not both")
    if plural in raw:
        values = raw[plural]
        if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, str) for v in values) \
                or values[0] == values[1]:
            raise ComparisonSpecError(f"{where}: '{plural}' must list two different names, got {values!r}")
        return values[0], values[1]
    one = raw.get(singular, default)
    if not isinstance(one, str):
        raise ComparisonSpecError(f"{where}: '{singular}' must be a name, got {one!r}")
    return one, one


def _positive(raw: object, key: str, where: str, *, integer: bool, high: float) -> float:
    """``raw`` when it is a number in (0, high] (an integer where ``integer``); booleans and NaN are refused."""
    ok = isinstance(raw, int) if integer else isinstance(raw, int | float)
    if not ok or isinstance(raw, bool) or not 0 < raw <= high:
        kind = "an integer" if integer else "a number"
        raise ComparisonSpecError(f"{where}: '{key}' must be {kind} > 0 and <= {high:g}, got {raw!r}")
    return raw


def parse_comparison(raw: object, where: str) -> ComparisonSpec:
    """One item of the section; ComparisonSpecError says what is wrong with it."""
    from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
    from hwbench_pipeline.bench.catalog.sources import ModelSourceError, resolve_model
    from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target
    from hwbench_pipeline.bench.models import PRESETS
    from hwbench_pipeline.bench.precision import SPECS, canonical_spec, unknown_spec_reason

    if not isinstance(raw, dict):
        raise ComparisonSpecError(f"{where}: expected a mapping with keys {', '.join(sorted(REQUIRED_KEYS))}")
    missing, extra = REQUIRED_KEYS - raw.keys(), raw.keys() - REQUIRED_KEYS - OPTIONAL_KEYS
    if missing or extra:
        raise ComparisonSpecError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(sorted(missing))}"] if missing else [])
            + ([f"unknown keys {', '.join(sorted(map(repr, extra)))}"] if extra else []))
            + f"; accepted keys: {', '.join(sorted(REQUIRED_KEYS | OPTIONAL_KEYS))}")
    if ("targets" in raw) == ("precisions" in raw):
        raise ComparisonSpecError(f"{where}: give 'targets' (two targets) or 'precisions' (two precisions), "
                                  "exactly one of them")
    targets = _pair(raw, "targets", "target", "cpu-torch", where)
    precisions = _pair(raw, "precisions", "precision", "fp32", where)
    for target in dict.fromkeys(targets):
        try:
            parse_target(target)
        except UnknownTargetError:
            raise ComparisonSpecError(f"{where}: unknown target {target!r}") from None
    for precision in dict.fromkeys(precisions):
        if unknown_spec_reason(precision):
            raise ComparisonSpecError(f"{where}: unknown precision {precision!r}; accepted: {', '.join(SPECS)}")
    canonical = (canonical_spec(precisions[0]), canonical_spec(precisions[1]))
    if "precisions" in raw and canonical[0] == canonical[1]:
        raise ComparisonSpecError(f"{where}: 'precisions' {list(precisions)!r} name the same precision")
    for key in ("model", "preset"):
        if not isinstance(raw[key], str):
            raise ComparisonSpecError(f"{where}: '{key}' must be a name, got {raw[key]!r}")
    try:
        resolve_model(raw["model"])
    except (UnknownArchitectureError, ModelSourceError, RuntimeError):  # RuntimeError: "~nobody/…" (expanduser)
        raise ComparisonSpecError(f"{where}: unknown model {raw['model']!r}; accepted: a curated family, any "
                                  "transformers model type, a config.json or a checkpoint folder") from None
    if raw["preset"] not in PRESETS:
        raise ComparisonSpecError(f"{where}: unknown preset {raw['preset']!r}; accepted: {', '.join(PRESETS)}")
    return ComparisonSpec(
        model=raw["model"], preset=raw["preset"],
        batch_size=int(_positive(raw["batch_size"], "batch_size", where, integer=True, high=MAX_SHAPE)),
        seq_len=int(_positive(raw["seq_len"], "seq_len", where, integer=True, high=MAX_SHAPE)),
        targets=targets, precisions=canonical,
        pairs=int(_positive(raw.get("pairs", DEFAULT_PAIRS), "pairs", where, integer=True, high=MAX_PAIRS)),
        seconds_per_process=float(_positive(raw.get("seconds_per_process", DEFAULT_SECONDS_PER_PROCESS),
                                            "seconds_per_process", where, integer=False, high=MAX_SECONDS)),
        threshold=float(_positive(raw.get("threshold", DEFAULT_THRESHOLD), "threshold", where, integer=False,
                                  high=1.0)),
    )


def parse_comparisons(raw: object, source: str) -> tuple[ComparisonSpec, ...]:
    """The section: a non-empty list of comparisons, none twice."""
    where = f"{source}: comparisons"
    if not isinstance(raw, list) or not raw:
        raise ComparisonSpecError(f"{where}: expected a non-empty list of comparisons")
    specs = tuple(parse_comparison(item, f"{where}[{i}]") for i, item in enumerate(raw))
    sides = [(s.model, s.preset, s.batch_size, s.seq_len, s.targets, s.precisions) for s in specs]
    if len(set(sides)) != len(sides):
        raise ComparisonSpecError(f"{where}: a comparison is listed twice (the same model, shape and sides)")
    return specs
