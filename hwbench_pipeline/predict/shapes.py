"""What the predictor knows about a model before it runs: its shape and the FLOPs of one call.

Shapes come from the catalog (:func:`hwbench_pipeline.bench.models.describe`): a curated family, any model type
of transformers, or a config file. FLOPs are counted, in this order of preference:

1. taken from a measured row of the same model and sequence length (FLOPs are linear in the batch);
2. counted with torch's FLOP counter on the meta device (no weights allocated, any size);
3. counted on the CPU with real random weights at batch 1, for models up to ``CPU_COUNT_MAX_PARAMS``
   (a few families check their inputs' values, which meta tensors do not have);
4. estimated as 2 x parameters x tokens, marked ``estimated`` so the predictor lowers its confidence.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

CPU_COUNT_MAX_PARAMS = 400_000_000
SHAPE_COLUMNS = ["category", "params", "layers", "hidden_size", "heads", "intermediate_size", "vocab_size",
                 "kv_heads", "experts", "attention_kind", "model_type"]


class NotAModelConfigError(ValueError):
    """A file that is not a transformers model config the catalog can build."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to predict for: a curated family, a model type or a config file (``family``) at a preset."""

    family: str
    preset: str

    @property
    def label(self) -> str:
        from hwbench_pipeline.bench.catalog.scaling import AS_IS

        return self.family if self.preset == AS_IS else f"{self.family}/{self.preset}"


@functools.cache
def _describe_catalog(family: str, preset: str) -> dict:
    from hwbench_pipeline.bench import models

    return models.describe(family, preset)


def describe(spec: ModelSpec) -> dict:
    """Shape columns of a model (params counted on the meta device)."""
    row = _describe_catalog(spec.family, spec.preset)
    return {k: row.get(k) for k in SHAPE_COLUMNS}


def _count_leaves(model) -> int:
    return sum(1 for m in model.modules() if next(m.children(), None) is None)


@functools.cache
def leaf_modules(spec: ModelSpec) -> int:
    """Modules without children (linear layers, norms, activations …), counted on the meta device: each costs
    a kernel launch and Python dispatch per call, the part of a small model's latency FLOPs do not explain."""
    from hwbench_pipeline.bench import models

    return _count_leaves(models.build_model(spec.family, spec.preset, device="meta"))


def _count(spec: ModelSpec, seq_len: int, device: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hwbench_pipeline.bench import models

    model = models.build_model(spec.family, spec.preset, device=device)
    config = models.build_config(spec.family, spec.preset)
    if not models.is_curated(spec.family):
        from hwbench_pipeline.bench.catalog.generic import count_flops

        return count_flops(model, config, 1, seq_len)
    inputs = models.make_inputs(spec.family, config, 1, seq_len)
    if device == "meta":
        # An all-ones attention mask changes no matmul, and transformers inspects its values (meta has none).
        inputs = {k: v.to("meta") for k, v in inputs.items() if k != "attention_mask"}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        models.forward(model, inputs)
    return float(counter.get_total_flops())


class FlopCounter:
    """FLOPs per call of (model, batch, sequence), counted once per (model, sequence) and cached on disk."""

    def __init__(self, cache_file: Path | None = None, measured: dict[tuple, float] | None = None) -> None:
        self.cache_file = cache_file
        self.measured = measured or {}  # (family, preset, seq_len) -> FLOPs per sample, from measured rows
        self.cache: dict[str, list] = {}
        if cache_file and cache_file.exists():
            self.cache = json.loads(cache_file.read_text())

    @classmethod
    def from_results(cls, results, cache_file: Path | None = None) -> FlopCounter:
        """Seeded with the FLOPs every measured row counted (per sample)."""
        measured = {}
        if results is not None and results.height and "flops_per_call" in results.columns:
            for row in results.select("family", "preset", "seq_len", "batch_size", "flops_per_call").iter_rows():
                if row[4]:
                    measured[(row[0], row[1], int(row[2]))] = float(row[4]) / int(row[3])
        return cls(cache_file, measured)

    def per_sample(self, spec: ModelSpec, seq_len: int) -> tuple[float, str]:
        """(FLOPs of one sample, how they were obtained: measured / counted / estimated)."""
        if (spec.family, spec.preset, seq_len) in self.measured:
            return self.measured[(spec.family, spec.preset, seq_len)], "measured"
        key = f"{spec.family}/{spec.preset}/{seq_len}"
        if key not in self.cache:
            self.cache[key] = list(self._count_or_estimate(spec, seq_len))
            if self.cache_file:
                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                self.cache_file.write_text(json.dumps(self.cache, indent=0, sort_keys=True))
        flops, source = self.cache[key]
        return float(flops), str(source)

    def _count_or_estimate(self, spec: ModelSpec, seq_len: int) -> tuple[float, str]:
        try:
            return _count(spec, seq_len, "meta"), "counted"
        except (RuntimeError, NotImplementedError, ValueError, TypeError, AttributeError, IndexError):
            pass
        params = describe(spec)["params"]
        if params <= CPU_COUNT_MAX_PARAMS:
            try:
                return _count(spec, seq_len, "cpu"), "counted"
            except (RuntimeError, NotImplementedError, ValueError, TypeError, AttributeError, IndexError):
                pass
        return 2.0 * params * max(seq_len, 1), "estimated"


def load_hf_config(path: Path) -> ModelSpec:
    """A transformers config.json of any architecture the registry knows, as a ModelSpec at its own size.

    Raises NotAModelConfigError with one line when the file is not JSON, not a config, of a model type
    transformers does not know, or does not build a model.
    """
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.catalog.registry import UnknownArchitectureError
    from hwbench_pipeline.bench.catalog.scaling import AS_IS
    from hwbench_pipeline.bench.catalog.sources import ModelSourceError, resolve_model

    path = Path(path)
    if not path.is_file():
        raise NotAModelConfigError(f"{path}: no such file")
    try:
        source = resolve_model(str(path))
    except (ModelSourceError, UnknownArchitectureError) as exc:
        raise NotAModelConfigError(str(exc)) from None
    try:
        models.build_model(str(path), AS_IS, device="meta")
    except Exception as exc:  # noqa: BLE001 - any failure to build means the file does not describe a model
        raise NotAModelConfigError(f"{path}: a {source.model_type} config that does not build a model "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    return ModelSpec(family=str(path), preset=AS_IS)


def model_spec_of(text: str, default_preset: str) -> ModelSpec:
    """``FAMILY``, ``FAMILY/PRESET``, a model type (with or without ``/PRESET``), or a config file (its own size)."""
    if Path(text).expanduser().is_file():
        return load_hf_config(Path(text).expanduser())
    family, _, preset = text.partition("/")
    return ModelSpec(family, preset or default_preset)

