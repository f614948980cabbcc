"""torch eager on CPU, CUDA, ROCm (torch addresses it as cuda) and MPS; int8 through torchao on the CPU."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import torch

from hwbench_pipeline.bench.backends.torch.config import (
    AUTOCAST_DTYPES,
    INT8_LAYERS,
    INT8_MIN_WEIGHT_SHARE,
    NATIVE_CPU_FEATURES,
    TOLERANCE,
)
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.precision import canonical_spec, offered_specs, parse_spec

GPU_KINDS = ("cuda", "rocm")


def _onednn_supports(fmt: str) -> bool:
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[fmt]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        return False


def cpu_native_support(fmt: str) -> tuple[bool, str]:
    """Whether this CPU does ``fmt`` (bf16 or fp16) arithmetic natively, and what was detected, in words.

    Native means a CPU feature that computes in that format (NATIVE_CPU_FEATURES) and oneDNN reporting
    support; torch builds without torch.cpu.get_capabilities fall back to oneDNN's report alone.
    """
    onednn = _onednn_supports(fmt)
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    capability = torch.backends.cpu.get_cpu_capability()
    if get_capabilities is None:
        return onednn, f"oneDNN {fmt}: {'yes' if onednn else 'no'}; torch CPU capability {capability}"
    caps = get_capabilities()
    arch = str(caps.get("architecture", "")).lower()
    features = NATIVE_CPU_FEATURES[fmt].get("arm64" if arch in ("arm64", "aarch64") else "x86_64", ())
    found = {name: bool(caps.get(name, False)) for name in features}
    seen = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in found.items())
    detected = f"{seen}, oneDNN {fmt} {'yes' if onednn else 'no'}; torch CPU capability {capability}"
    return onednn and any(found.values()), detected


def _int8_filter(module: torch.nn.Module, fqn: str) -> bool:
    # torchao's default: every nn.Linear but MHA's out_proj, whose weight MHA reads directly (INT8_LAYERS)
    return (isinstance(module, torch.nn.Linear)
            and not isinstance(module, torch.nn.modules.linear.NonDynamicallyQuantizableLinear))


def _int8_weight_share(model: torch.nn.Module) -> float:
    """Share of the model's matmul/conv weights (2+ dims, not embeddings) that are torchao int8 tensors."""
    from torchao.quantization import Int8Tensor

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    int8 = total = 0
    for param in model.parameters():
        if param.ndim < 2 or id(param) in embeddings:
            continue
        total += param.numel()
        if isinstance(param, Int8Tensor) and param.qdata.dtype == torch.int8:
            int8 += param.numel()
    return int8 / total if total else 0.0


def _observe_linear_inputs(model: torch.nn.Module, forward: Callable, batches: Sequence[dict[str, Any]],
                           device: torch.device) -> dict[str, tuple[float, set[int]]]:
    """max |input| and the input ranks each quantizable Linear saw over the calibration batches."""
    seen: dict[str, tuple[float, set[int]]] = {}

    def observer(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple) -> None:
            amax, ranks = seen.get(name, (0.0, set()))
            seen[name] = (max(amax, float(args[0].detach().abs().max())), ranks | {args[0].ndim})
        return hook

    handles = [m.register_forward_pre_hook(observer(n)) for n, m in model.named_modules() if _int8_filter(m, n)]
    try:
        with torch.inference_mode():
            for batch in batches:
                forward(model, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    finally:
        for handle in handles:
            handle.remove()
    return seen


def quantize_int8(model: torch.nn.Module, quantization: str, forward: Callable, device: torch.device,
                   calibration: Sequence[dict[str, Any]]) -> None:
    """Quantize the model's Linear layers in place (config.INT8_LAYERS); UnsupportedConfigurationError when
    torchao is missing, fails, or leaves most of the model's weights unquantized."""
    spec = f"int8-{quantization}"
    if quantization == "static" and not calibration:
        raise UnsupportedConfigurationError(f"{spec} needs calibration batches; none were passed to prepare")
    try:
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8StaticActivationInt8WeightConfig,
            PerRow,
            PerTensor,
            quantize_,
        )
        from torchao.utils import should_reduce_range
    except Exception as exc:  # noqa: BLE001 - any import failure (ABI, missing symbol) means no torchao here
        raise UnsupportedConfigurationError(f"{spec}: torchao cannot be imported here ({_one_line(exc)})") from exc
    # CPUs without VNNI overflow the u8s8 int8 dot product at the full range, so torchao halves it there
    reduce_range = should_reduce_range(device)
    try:
        if quantization == "dynamic":
            quantize_(model, Int8DynamicActivationInt8WeightConfig(
                granularity=PerRow(), set_inductor_config=False, reduce_range=reduce_range), filter_fn=_int8_filter)
        else:
            qmax = 63 if reduce_range else 127
            for name, (amax, ranks) in _observe_linear_inputs(model, forward, calibration, device).items():
                if len(ranks) != 1:
                    raise UnsupportedConfigurationError(
                        f"{spec}: {name} saw inputs of ranks {sorted(ranks)}; a static scale fits one rank")
                # per-tensor symmetric scale; a layer that only saw zeros gets the smallest scale, not 0
                scale = torch.full((1,) * ranks.pop(), max(amax, torch.finfo(torch.float32).eps) / qmax,
                                   device=device)
                # Linears the calibration forward never reached do not run in it either: they stay fp32
                quantize_(model.get_submodule(name), Int8StaticActivationInt8WeightConfig(
                    act_quant_scale=scale, granularity=[PerTensor(), PerRow()], set_inductor_config=False,
                    reduce_range=reduce_range), filter_fn=_int8_filter)
    except UnsupportedConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - torchao's failure on this model becomes the configuration's row
        raise UnsupportedConfigurationError(f"{spec}: torchao failed to quantize this model "
                                            f"({type(exc).__name__}: {_one_line(exc)})") from exc
    share = _int8_weight_share(model)
    if share < INT8_MIN_WEIGHT_SHARE:
        raise UnsupportedConfigurationError(
            f"{spec}: only {share:.0%} of this model's matmul/conv weights became int8 (torchao quantizes "
            f"{INT8_LAYERS} only), so it would mostly run fp32")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or nothing for fp32 and int8 (AUTOCAST_DTYPES)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


class TorchRunner:
    def __init__(self, model: torch.nn.Module, inputs: dict[str, Any], forward: Any, device: str,
                 precision: str) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        self.forward = forward
        # the number format: fp32/bf16/fp16 as autocast runs them; int8 only once prepare saw int8 weights
        self.precision = precision
        self.from_cache = False  # torch runs the model itself: nothing is exported, so nothing is cached
        self.cache_write_s = 0.0
        self._autocast_dtype = AUTOCAST_DTYPES.get(precision)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _context(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self._autocast_dtype)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def __call__(self) -> Any:
        with torch.inference_mode(), self._context():
            out = self.forward(self.model, self.inputs)
        self._synchronize()
        return out

    def output(self) -> torch.Tensor:
        return self().float().cpu()

    def peak_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return None

    def release(self) -> None:
        del self.model, self.inputs
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class TorchBackend:
    name = "torch"

    def available(self, device_kind: str) -> tuple[bool, str]:
        if device_kind == "cpu":
            return True, ""
        if device_kind in GPU_KINDS:
            return (torch.cuda.is_available(), f"torch {torch.__version__} sees no {device_kind} device")
        if device_kind == "mps":
            mps = getattr(torch.backends, "mps", None)
            return (bool(mps and mps.is_available()), "no MPS device")
        return False, f"torch does not run on {device_kind}"

    def unsupported_reason(self, precision: str, device_kind: str) -> str | None:
        fmt, _ = parse_spec(precision)
        spec = canonical_spec(precision)
        if device_kind not in ("cpu", "mps", *GPU_KINDS):
            return f"torch does not run on {device_kind}"
        if device_kind != "cpu":
            if fmt != "int8":
                return None  # accelerators run fp32/bf16/fp16 autocast, as they always have here
            if device_kind == "mps":
                return f"{spec} on mps: torchao's int8 kernels have no MPS path"
            return (f"{spec} on {device_kind} is not offered: torchao's GPU int8 path (torch._int_mm, with a CPU "
                    f"fallback for dims not multiple of 8) has not been run nor its tolerance measured on a GPU here")
        if fmt in ("bf16", "fp16"):
            native, detected = cpu_native_support(fmt)
            why = "an emulated" if fmt == "bf16" else "a slow fallback"
            return None if native else f"this CPU has no native {fmt} ({detected}), so {fmt} autocast would " \
                                       f"run {why} path"
        if fmt == "int8" and importlib.util.find_spec("torchao") is None:
            return f"{spec} quantizes through torchao, which is not installed here"
        return None

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        return offered_specs(self.unsupported_reason, device_kind)

    def tolerance(self, precision: str) -> float:
        # plain "int8" (what a runner reports) is int8-dynamic, as everywhere (precision.ALIASES)
        return TOLERANCE[canonical_spec(precision)]

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str, *,
                calibration: Sequence[dict[str, Any]] = ()) -> TorchRunner:
        """The model made ready to run ``precision`` on ``device``. int8 quantizes the model given in place
        (the caller hands it over: its reference output was computed before)."""
        fmt, quantization = parse_spec(precision)
        dev = torch.device(device)
        kind = {"cpu": "cpu", "mps": "mps"}.get(dev.type, "cuda")
        reason = self.unsupported_reason(precision, kind)
        if reason is not None:
            raise UnsupportedConfigurationError(f"torch on {device}: {reason}")
        if fmt == "int8":
            model = model.to(dev)
            quantize_int8(model, quantization, forward, dev, calibration)
        return TorchRunner(model, inputs, forward, device, fmt)

    def generation_caches(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.torch.generate import GENERATION_CACHES

        return GENERATION_CACHES

    def generation_precisions(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.torch.generate import GENERATION_PRECISION_SPECS

        return tuple(s for s in GENERATION_PRECISION_SPECS if self.unsupported_reason(s, device_kind) is None)

    def prepare_generator(self, model: Any, inputs: dict[str, Any], device: str, precision: str, *,
                          max_new_tokens: int, cache: str, cache_precision: str = "model",
                          residual_length: int = 0) -> Any:
        """A greedy decoder over ``model`` (bench/backends/torch/generate.py); int8 quantizes it in place."""
        from hwbench_pipeline.bench.backends.torch.generate import TorchGenerator

        kind = {"cpu": "cpu", "mps": "mps"}.get(torch.device(device).type, "cuda")
        reason = self.unsupported_reason(precision, kind)
        if reason is not None:
            raise UnsupportedConfigurationError(f"torch on {device}: {reason}")
        return TorchGenerator(model, inputs, device, precision, max_new_tokens=max_new_tokens, cache=cache,
                              cache_precision=cache_precision, residual_length=residual_length)


BACKEND = TorchBackend()
