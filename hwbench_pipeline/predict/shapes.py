"""What the predictor knows about a model before it runs: its shape and the FLOPs of one call.

Shapes come from the catalog (:func:`hwbench_pipeline.bench.models.describe`) or from a Hugging Face config
file. FLOPs are counted, in this order of preference:

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
from typing import Any

CPU_COUNT_MAX_PARAMS = 400_000_000
SHAPE_COLUMNS = ["category", "params", "layers", "hidden_size", "heads", "intermediate_size", "vocab_size"]


class NotAModelConfigError(ValueError):
    """A file that is not a Hugging Face model config of an architecture the catalog knows."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to predict for: a catalog preset, or a config loaded from a file (preset = the file's stem)."""

    family: str
    preset: str
    config: Any = None  # transformers config when it came from a file; None for catalog presets

    @property
    def label(self) -> str:
        return f"{self.family}/{self.preset}"


def _build_config(spec: ModelSpec):
    from hwbench_pipeline.bench import models

    return spec.config if spec.config is not None else models.build_config(spec.family, spec.preset)


def _build_model(spec: ModelSpec, device: str):
    import torch

    from hwbench_pipeline.bench import models

    if spec.config is None:
        return models.build_model(spec.family, spec.preset, device=device)
    cls = getattr(__import__("transformers"), models.FAMILIES[spec.family].hf_class)
    with torch.device(device):
        model = cls(spec.config)
    model.requires_grad_(False)
    return model.eval()


@functools.cache
def _describe_catalog(family: str, preset: str) -> dict:
    from hwbench_pipeline.bench import models

    return models.describe(family, preset)


def describe(spec: ModelSpec) -> dict:
    """Shape columns of a model (params counted on the meta device)."""
    if spec.config is None:
        row = _describe_catalog(spec.family, spec.preset)
        return {k: row[k] for k in SHAPE_COLUMNS}
    from hwbench_pipeline.bench import models

    config = spec.config
    main = config.text_config if spec.family in ("clip", "clap", "xclip", "llava", "llava_next") else config

    def first(*names: str):
        return next((getattr(main, n) for n in names if getattr(main, n, None) is not None), None)

    model = _build_model(spec, "meta")
    return {
        "category": models.FAMILIES[spec.family].category,
        "params": int(sum(p.numel() for p in model.parameters())),
        "layers": first("num_hidden_layers", "num_layers", "encoder_layers"),
        "hidden_size": first("hidden_size", "d_model"),
        "heads": first("num_attention_heads", "num_heads", "encoder_attention_heads"),
        "intermediate_size": first("intermediate_size", "d_ff", "encoder_ffn_dim"),
        "vocab_size": getattr(main, "vocab_size", None),
    }


def _count_leaves(model) -> int:
    return sum(1 for m in model.modules() if next(m.children(), None) is None)


@functools.cache
def _leaf_modules_catalog(family: str, preset: str) -> int:
    return _count_leaves(_build_model(ModelSpec(family, preset), "meta"))


def leaf_modules(spec: ModelSpec) -> int:
    """Modules without children (linear layers, norms, activations …), counted on the meta device: each costs
    a kernel launch and Python dispatch per call, the part of a small model's latency FLOPs do not explain."""
    if spec.config is None:
        return _leaf_modules_catalog(spec.family, spec.preset)
    return _count_leaves(_build_model(spec, "meta"))


def _count(spec: ModelSpec, seq_len: int, device: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hwbench_pipeline.bench import models

    model = _build_model(spec, device)
    inputs = models.make_inputs(spec.family, _build_config(spec), 1, seq_len)
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
        if spec.config is None and (spec.family, spec.preset, seq_len) in self.measured:
            return self.measured[(spec.family, spec.preset, seq_len)], "measured"
        key = f"{spec.family}/{spec.preset}/{seq_len}" + ("" if spec.config is None else "/config")
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
        except (RuntimeError, NotImplementedError, ValueError, TypeError):
            pass
        params = describe(spec)["params"]
        if params <= CPU_COUNT_MAX_PARAMS:
            try:
                return _count(spec, seq_len, "cpu"), "counted"
            except (RuntimeError, NotImplementedError, ValueError, TypeError):
                pass
        return 2.0 * params * max(seq_len, 1), "estimated"


def load_hf_config(path: Path) -> ModelSpec:
    """A model config.json as a ModelSpec of the catalog family with its architecture.

    Raises NotAModelConfigError with one line when the file is not JSON, not a config, or of an architecture
    the catalog cannot build inputs for.
    """
    from hwbench_pipeline.bench import models

    by_model_type = {
        "bert": "bert", "t5": "t5", "llama": "llama", "qwen2": "qwen2", "clip": "clip", "vit": "vit",
        "detr": "detr", "clap": "clap", "whisper": "whisper", "wav2vec2": "wav2vec2", "llava": "llava",
        "llava_next": "llava_next", "xclip": "xclip",
    }
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NotAModelConfigError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotAModelConfigError(f"{path}: not a JSON model config ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise NotAModelConfigError(f"{path}: not a Hugging Face model config (no 'model_type' key)")
    family = by_model_type.get(str(data["model_type"]))
    if family is None:
        raise NotAModelConfigError(
            f"{path}: model_type {data['model_type']!r} is not an architecture the catalog builds; "
            f"accepted: {', '.join(sorted(by_model_type))}")
    cls = getattr(__import__("transformers"), models.FAMILIES[family].hf_class).config_class
    try:
        config = cls(**{k: v for k, v in data.items() if k != "model_type"})
        config._attn_implementation = "eager"  # as the catalog builds its models: attention FLOPs are counted
        _build_model(ModelSpec(family, Path(path).stem, config), "meta")
    except Exception as exc:  # noqa: BLE001 - any failure to build means the file does not describe a model
        raise NotAModelConfigError(f"{path}: a {family} config that does not build a model "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    return ModelSpec(family=family, preset=Path(path).stem, config=config)
