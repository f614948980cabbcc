"""Build any registered architecture from its config and run one forward pass (no weights, nothing fetched)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwbench_pipeline.bench.catalog.inputs import RECIPES, NotApplicable, recipes_for, with_required_companions
from hwbench_pipeline.bench.catalog.scaling import AS_IS, scale_config
from hwbench_pipeline.bench.catalog.sources import ModelSource, ModelSourceError, resolve_model
from hwbench_pipeline.bench.config_key import ATTENTION

PUBLISHED = "full"  # a model type's default config, as transformers ships it: usually the published size


def source_config(source: ModelSource) -> Any:
    """The config ``source`` names, read from disk or transformers' defaults, with eager attention (so FLOP
    counters see the attention matmuls)."""
    from transformers import AutoConfig

    if source.kind == "checkpoint":
        config = AutoConfig.from_pretrained(source.path, local_files_only=True, trust_remote_code=False)
    elif source.kind == "config":
        data = json.loads(source.path.read_text())
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        fixes = default_config_fixes(source.model_type)
        config = AutoConfig.for_model(source.model_type, **{name: value for name, value, _ in fixes})
    config._attn_implementation = ATTENTION
    return config


def default_config_fixes(model_type: str) -> list[tuple[str, Any, str]]:
    """(setting, value, why) for each setting of ``model_type``'s default config that hwbench changes: a timm
    backbone (timm is an optional package) becomes transformers' own ResNet with the same output stages, as
    the curated DETR is built; a head width or key/value head count the default leaves unset (the model
    cannot be built without it) gets the value the other sizes imply."""
    from transformers import AutoConfig

    from hwbench_pipeline.bench.catalog.registry import architectures

    if model_type not in architectures():  # a config file or checkpoint is built as given
        return []
    config = AutoConfig.for_model(model_type)
    backbone = getattr(config, "backbone_config", None)
    fixes = []
    settings = vars(config)  # not getattr: some configs refuse to read a per-layer setting globally
    heads, hidden = settings.get("num_attention_heads"), settings.get("hidden_size")
    if "head_dim" in settings and settings["head_dim"] is None and isinstance(heads, int) and isinstance(hidden, int):
        fixes.append(("head_dim", hidden // heads, "unset in the default config: hidden size / heads"))
    if "num_key_value_heads" in settings and settings["num_key_value_heads"] is None and isinstance(heads, int):
        fixes.append(("num_key_value_heads", heads, "unset in the default config: one per attention head"))
    if getattr(config, "use_timm_backbone", False):
        fixes.append(("use_timm_backbone", False, "transformers' own backbone instead of timm's"))
    if getattr(backbone, "model_type", None) == "timm_backbone":
        stages = [f"stage{i}" for i in (getattr(backbone, "out_indices", None) or [1, 2, 3, 4]) if 1 <= i <= 4]
        resnet = {"model_type": "resnet", "out_features": stages or ["stage4"]}
        fixes.append(("backbone_config", resnet, "transformers' own ResNet instead of a timm backbone"))
    return fixes


def build_config(model: str | ModelSource, preset: str) -> Any:
    """The config of ``model`` (a model type, config file or checkpoint folder) scaled to ``preset``."""
    source = model if isinstance(model, ModelSource) else resolve_model(model)
    preset = AS_IS if preset == PUBLISHED else preset
    if source.kind == "checkpoint" and preset != AS_IS:
        raise ModelSourceError(f"{source.name}: a checkpoint is measured with its own weights, at its own size: "
                               f"use preset {AS_IS}")
    config = scale_config(source_config(source), preset)
    config._attn_implementation = ATTENTION
    return config


def parameter_count(config: Any) -> int:
    """Parameters of ``config``'s base model, counted on the meta device (nothing allocated)."""
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config, attn_implementation=ATTENTION)
    return sum(p.numel() for p in model.parameters())


def refuse_if_too_big(config: Any, headroom: float = 0.5) -> None:
    """Raise an ``out_of_memory`` failure before building a model whose fp32 weights alone would take more than
    ``headroom`` of the memory available now (activations and a second copy for export come on top)."""
    from hwbench_pipeline.bench.failures import BenchmarkFailure
    from hwbench_pipeline.bench.trackers.memory import available_memory_mb

    need_mb = parameter_count(config) * 4 / 2**20
    available = available_memory_mb()
    if need_mb > headroom * available:
        raise BenchmarkFailure("out_of_memory", f"{config.model_type}: {need_mb / 1024:.1f} GiB of fp32 weights, "
                                                f"more than {headroom:.0%} of the {available / 1024:.1f} GiB "
                                                "available here: not built")


def build_model(config: Any, *, seed: int = 0, checkpoint: Path | None = None,
                auto_class: Any = None) -> torch.nn.Module:
    """The base model of ``config``'s architecture (or the one ``auto_class`` builds, a head included) in fp32,
    frozen, in eval mode: random weights drawn after ``torch.manual_seed(seed)``, or a checkpoint's own weights,
    every one of which must load."""
    from transformers import AutoModel

    auto = auto_class or AutoModel
    refuse_if_too_big(config)
    torch.manual_seed(seed)
    if checkpoint is None:
        model = auto.from_config(config, attn_implementation=ATTENTION)
    else:
        try:
            model, info = auto.from_pretrained(
                checkpoint, config=config, attn_implementation=ATTENTION, local_files_only=True,
                trust_remote_code=False, use_safetensors=True, output_loading_info=True,
                ignore_mismatched_sizes=True)  # mismatches are listed below and refused, with their names
        except (RuntimeError, ValueError, OSError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise ModelSourceError(f"{checkpoint}: the weights do not load into its config's model ({first})") from None
        missing = sorted(info.get("missing_keys") or [])
        mismatched = sorted(str(m[0] if isinstance(m, (tuple, list)) else m)
                            for m in info.get("mismatched_keys") or [])
        if missing or mismatched:
            names = ", ".join([*missing[:3], *mismatched[:3]])
            raise ModelSourceError(f"{checkpoint}: the weights do not match the config ({len(missing)} missing, "
                                   f"{len(mismatched)} of another shape: {names})")
    model.requires_grad_(False)
    return model.to(dtype=torch.float32).eval()


def main_output(out: Any) -> torch.Tensor:
    """The first tensor of a model output (its last hidden state, logits or embeddings)."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if hasattr(out, "values") else out
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
            return value[0]
    raise TypeError(f"{type(out).__name__} holds no tensor")


@dataclass
class ForwardResult:
    recipe: str
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor
    tried: list[str]  # recipes that failed before this one, with their errors


def generic_forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One call without a key/value cache (a cache is generation's concern, and exporters trace it badly); the
    main output tensor."""
    from hwbench_pipeline.bench.models import accepts_use_cache

    extra = {"use_cache": False} if accepts_use_cache(type(model)) else {}
    return main_output(model(**inputs, **extra))


def recipe_inputs(name: str, model: torch.nn.Module, config: Any, batch: int, seq: int,
                  seed: int) -> dict[str, torch.Tensor]:
    """The inputs recipe ``name`` makes, with the required companions it left out (seeded: the same every time)."""
    gen = torch.Generator().manual_seed(seed)
    return with_required_companions(model, config, RECIPES[name](model, config, batch, seq, gen), batch, seq, gen)


def run_forward(model: torch.nn.Module, config: Any, batch: int, seq: int, *, seed: int = 0) -> ForwardResult:
    """One forward pass with the first input recipe that works. When none does, the first recipe's error is
    raised (the most specific recipe's complaint says most), carrying every recipe's in ``recipes_tried``."""
    tried: list[str] = []
    first: BaseException | None = None
    for name in recipes_for(model):
        try:
            inputs = recipe_inputs(name, model, config, batch, seq, seed)
            with torch.inference_mode():
                output = generic_forward(model, inputs)
            return ForwardResult(name, inputs, output, tried)
        except NotApplicable:
            continue
        except Exception as exc:  # noqa: BLE001 - the next recipe may fit
            tried.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            first = first or exc
    if first is None:
        raise NotApplicable(f"no input recipe fits {type(model).__name__}")
    first.recipes_tried = tried  # type: ignore[attr-defined]
    raise first


def count_flops(model: torch.nn.Module, config: Any, batch: int, seq: int, *, seed: int = 0) -> float:
    """FLOPs of one forward pass with the first input recipe that runs, counted by torch's FLOP counter. On a
    meta-device model nothing is allocated; transformers reads an attention mask's values in some models
    (meta tensors have none) and derives packed sequences from the positions without one in others, so the
    mask is left out first and kept second (an all-ones mask changes no matmul)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = next(model.parameters()).device.type == "meta"
    first: BaseException | None = None
    for name in recipes_for(model):
        try:
            inputs = recipe_inputs(name, model, config, batch, seq, seed)
        except NotApplicable:
            continue
        except Exception as exc:  # noqa: BLE001 - the next recipe may fit
            first = first or exc
            continue
        variants = [{k: v.to("meta") for k, v in inputs.items() if k != "attention_mask"},
                    {k: v.to("meta") for k, v in inputs.items()}] if meta else [inputs]
        for variant in variants:
            try:
                with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                    generic_forward(model, variant)
                return float(counter.get_total_flops())
            except Exception as exc:  # noqa: BLE001 - the next variant or recipe may fit
                first = first or exc
    raise first or NotApplicable(f"no input recipe fits {type(model).__name__}")


def choose_inputs(model: torch.nn.Module, config: Any, batch: int, seq: int, *,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The inputs of the first recipe whose forward pass runs (one forward pass is spent finding it)."""
    return run_forward(model, config, batch, seq, seed=seed).inputs
