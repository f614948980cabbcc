"""OpenVINO on the CPU: the torch model is converted in process (``ov.convert_model``) and compiled for "CPU".

Every configuration converts its own static shapes; conversion and compilation count as load time. Where the
process has a configuration's export cache (export_cache.py), the converted model is saved there once and the
configuration's later processes read it instead of converting. The inference precision is set explicitly (the
CPU plugin's default is bf16 on CPUs that have it) and what ran is read back from the compiled model's runtime
graph (observe.py): the row records what ran, not what was asked. The int8 recipes (quantize.py) are applied
with NNCF to the converted fp32 model when preparing, as part of the load; the export cache keeps the fp32 model.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# openvino.convert_model sends usage telemetry (Google Analytics, opt-out) from a pool of sender threads and
# writes ~/intel/ unless a consent file says no. A benchmark worker must neither phone home nor carry extra
# threads: with the package masked, openvino falls back to its built-in no-op stub. That works where openvino
# is imported after this module (the engine imports it only here); disable_telemetry covers the other case.
sys.modules.setdefault("openvino_telemetry", None)

import torch  # noqa: E402

from hwbench_pipeline.bench.backends.export_cache import configuration_cache, publish  # noqa: E402
from hwbench_pipeline.bench.backends.exportable import traceable_experts  # noqa: E402
from hwbench_pipeline.bench.backends.openvino.config import (  # noqa: E402
    CACHE_ENTRY,
    CACHE_MODEL,
    CAPABILITIES,
    COMPILE_PROPERTIES,
    DYNAMIC_QUANTIZATION_GROUP_SIZE,
    OV_PRECISIONS,
    TOLERANCE,
    UNSUPPORTED_OPERATOR_MARKERS,
)
from hwbench_pipeline.bench.backends.openvino.observe import executed_precision  # noqa: E402
from hwbench_pipeline.bench.backends.openvino.quantize import (  # noqa: E402
    compress_weights,
    dynamic_quantization_missing,
    nncf_missing,
    quantize_static,
)
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError  # noqa: E402
from hwbench_pipeline.bench.precision import (  # noqa: E402
    PrecisionError,
    canonical_spec,
    offered_specs,
    parse_spec,
    unknown_spec_reason,
)

_GPU_KINDS = ("cuda", "rocm", "mps")


@functools.cache
def core() -> Any:
    import openvino as ov

    return ov.Core()


def disable_telemetry() -> None:
    """Point the converter at its no-op telemetry stub where openvino was imported before this module."""
    if sys.modules.get("openvino_telemetry") is None:
        return  # masked above: openvino already uses its stub
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils, utils
    except ImportError:  # another layout: nothing to patch
        return
    for module in (convert_impl, telemetry_utils, utils):
        if hasattr(module, "tm"):
            module.tm = telemetry_stub
    # the instance `import openvino` already created: no consent, nothing more sent (if the API is as expected)
    with contextlib.suppress(Exception):
        sys.modules["openvino_telemetry"].Telemetry().consent = False


def _cpu_capabilities() -> tuple[str, ...]:
    try:
        return tuple(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - no CPU plugin: nothing runs
        return ()


def _short(exc: BaseException, limit: int = 1500) -> str:
    """The informative end of OpenVINO's (long, C++-located) error text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = [line for line in lines if "conversion rule" in line or "Conversion is failed" in line
               or "Unsupported operation" in line or "unsupported opset" in line]
    if not summary and "Exception:" in lines[:-1]:  # a tracing failure: the next line is torch's own error
        start = lines.index("Exception:")
        summary = [lines[0], lines[start + 1]]
    text = " | ".join(summary or lines[-6:] or [type(exc).__name__])
    return text[:limit]


def classified_failure(stage: str, exc: BaseException) -> BenchmarkFailure:
    """An OpenVINO conversion or compilation error as a classified failure."""
    text = str(exc).lower()
    kind = "unsupported_operator" if any(m in text for m in UNSUPPORTED_OPERATOR_MARKERS) else "export_error"
    return BenchmarkFailure(kind, f"openvino {stage} failed ({type(exc).__name__}): {_short(exc)}")


def _keyword_wrapper(model: torch.nn.Module, forward: Any, names: list[str]) -> torch.nn.Module:
    """A module taking the inputs positionally, in ``names`` order, returning ``forward``'s one tensor.

    Its ``forward`` advertises ``names`` as its signature, so ``convert_model`` (given a dict) names the
    converted model's inputs after them and traces with positional arguments.
    """

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return forward(self.model, dict(zip(names, args, strict=True)))

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    Wrapper.forward.__signature__ = inspect.Signature(params)
    return Wrapper().eval()


def _convert(model: torch.nn.Module, inputs: dict[str, Any], forward: Any) -> Any:
    """The torch model converted to an ``ov.Model`` (its constants share the torch weights' memory)."""
    import openvino as ov

    from hwbench_pipeline.bench.backends.openvino.extensions import conversion_extensions

    disable_telemetry()
    wrapper = _keyword_wrapper(model, forward, list(inputs))
    try:
        # tracing warns about every shape read as a Python value: shapes are static per configuration
        # here, and the scenario checks the output against torch, so the warnings are only noise
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated",
                                    category=DeprecationWarning)
            return ov.convert_model(wrapper, example_input=dict(inputs), extension=conversion_extensions())
    except Exception as exc:  # noqa: BLE001 - every conversion error becomes a classified row
        raise classified_failure("conversion", exc) from exc


def _quantized(converted: Any, spec: str, calibration: Sequence[dict[str, Any]]) -> Any:
    """The converted fp32 model with the spec's int8 recipe applied (a new model), or itself for a float spec."""
    if not spec.startswith("int8"):
        return converted
    try:
        if spec == "int8-static":
            return quantize_static(converted, calibration)
        return compress_weights(converted)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model NNCF cannot quantize is a classified row
        raise classified_failure(f"{spec} quantization (nncf)", exc) from exc


def save_cached(converted: Any, entry: Path) -> float:
    """Publish the model that compiles at ``entry``, weights as they are: save_model's default would compress
    them to fp16, and a later process would then run other weights than the first. Returns the seconds taken."""
    import openvino as ov

    started = time.perf_counter()
    with publish(entry) as staged:
        staged.mkdir()
        ov.save_model(converted, staged / CACHE_MODEL, compress_to_fp16=False)
    return time.perf_counter() - started


def cached_model(entry: Path | None) -> Any | None:
    """The model a previous process saved at ``entry`` of the configuration's export cache, or None."""
    if entry is None or not (entry / CACHE_MODEL).is_file():
        return None
    try:
        return core().read_model(entry / CACHE_MODEL)
    except Exception as exc:  # noqa: BLE001
        raise classified_failure("cached model read", exc) from exc


def check_threads(compiled: Any) -> None:
    """Refuse a compiled model that runs fewer threads than torch was asked for: the row must not claim more."""
    asked, got = torch.get_num_threads(), int(compiled.get_property("INFERENCE_NUM_THREADS"))
    if got != asked:  # the plugin caps the count at the CPUs it sees
        raise UnsupportedConfigurationError(f"openvino runs {got} threads here, not the {asked} asked for "
                                            f"(it uses at most one thread per CPU it sees)")


class OpenVINORunner:
    def __init__(self, compiled: Any, inputs: dict[str, Any], model: Any, *, from_cache: bool = False) -> None:
        import openvino as ov

        self._compiled = compiled
        #: whether the converted model was read from the configuration's export cache instead of converted
        self.from_cache = from_cache
        self.cache_write_s = 0.0
        # convert_model shares the torch weights' memory with the converted constants: keep their owner alive
        self._model = model
        # int8 weights with f32 activations compute in int8 only where the plugin quantizes activations per call
        dynamic = int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) != 0
        #: the number format of most of the heavy ops' work in the runtime graph (may differ from the request)
        self.precision = executed_precision(compiled, dynamic_int8=dynamic and dynamic_quantization_missing() is None)
        self._request = compiled.create_infer_request()
        # bind once: numpy copies kept alive here, shared with the request's input tensors
        self._arrays: list[Any] = []
        for index, port in enumerate(compiled.inputs):
            name = next((n for n in port.get_names() if n in inputs), None)
            if name is None:
                raise BenchmarkFailure("export_error", f"openvino model input {port.get_any_name()!r} matches "
                                                       f"none of the inputs {', '.join(inputs)}")
            array = inputs[name].detach().cpu().contiguous().numpy().copy()
            self._arrays.append(array)
            self._request.set_input_tensor(index, ov.Tensor(array, shared_memory=True))
        #: inputs the converted model does not take (never fed)
        self.unused_inputs = sorted(set(inputs) - {n for port in compiled.inputs for n in port.get_names()})

    def __call__(self) -> None:
        # synchronous: returns when the CPU has finished; outputs stay views (no per-call copy)
        self._request.infer(share_outputs=True)

    def output(self) -> torch.Tensor:
        self()
        return torch.from_numpy(self._request.get_output_tensor(0).data.copy()).float()

    def peak_memory_mb(self) -> float | None:
        return None

    def release(self) -> None:
        del self._request, self._compiled, self._arrays, self._model


class OpenVINOBackend:
    name = "openvino"

    def available(self, device_kind: str) -> tuple[bool, str]:
        if device_kind in _GPU_KINDS:
            return False, (f"openvino runs on Intel GPUs/NPUs only, and Intel GPU targets are not part of the "
                           f"target-key scheme yet; {device_kind} devices are not OpenVINO devices")
        if device_kind != "cpu":
            return False, f"openvino does not run on {device_kind}"
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            return False, f"openvino cannot be imported here ({exc})"
        devices = core().available_devices
        if "CPU" not in devices:
            return False, f"openvino sees no CPU device (devices: {', '.join(devices) or 'none'})"
        return True, ""

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        return offered_specs(self.unsupported_reason, device_kind)

    def unsupported_reason(self, precision: str, device_kind: str) -> str | None:
        if (unknown := unknown_spec_reason(precision)) is not None:
            return unknown
        spec = canonical_spec(precision)
        ok, why = self.available(device_kind)
        if not ok:
            return why
        capabilities = _cpu_capabilities()
        needed = CAPABILITIES[spec]
        if needed not in capabilities:
            instead = " (an f16 hint would run bf16 or f32 instead)" if spec == "fp16" else ""
            return (f"the openvino CPU plugin has no native {spec} here{instead}: its OPTIMIZATION_CAPABILITIES "
                    f"are {', '.join(capabilities) or 'none'}, without {needed}")
        if spec.startswith("int8"):
            missing = nncf_missing() if spec == "int8-static" else dynamic_quantization_missing()
            if missing is not None:
                return missing
        return None

    def tolerance(self, precision: str) -> float:
        if precision in TOLERANCE:
            return TOLERANCE[precision]
        # a bare number format (a runner's int8): the loosest bound of the recipes producing it
        bounds = [bound for spec, bound in TOLERANCE.items() if parse_spec(spec)[0] == precision]
        return max(bounds) if bounds else TOLERANCE[canonical_spec(precision)]

    def compile_properties(self, precision: str) -> dict[str, object]:
        """Everything set when compiling: nothing is left to the plugin's defaults that changes what runs."""
        spec = canonical_spec(precision)
        properties: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": OV_PRECISIONS[spec],
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            **COMPILE_PROPERTIES,
        }
        if spec == "int8-dynamic":
            properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_QUANTIZATION_GROUP_SIZE
        return properties

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str, *,
                calibration: Sequence[dict[str, Any]] = ()) -> OpenVINORunner:
        kind = torch.device(device).type
        if kind != "cpu":
            raise UnsupportedConfigurationError(f"openvino runs on the CPU here, not on {device}")
        try:
            spec = canonical_spec(precision)
        except PrecisionError as exc:
            raise UnsupportedConfigurationError(str(exc)) from exc
        reason = self.unsupported_reason(spec, "cpu")
        if reason is not None:
            raise UnsupportedConfigurationError(f"precision {spec} is not supported by openvino here: {reason}")
        if spec == "int8-static" and not calibration:
            raise UnsupportedConfigurationError("openvino int8-static needs calibration batches; none were given")
        import openvino as ov

        traceable_experts(model)  # in both cases: the torch model the scenario compares with is the same
        cache = configuration_cache()
        entry = cache / CACHE_ENTRY if cache is not None else None
        converted = cached_model(entry)
        from_cache = converted is not None
        if not from_cache:
            converted = _convert(model, inputs, forward)
        try:
            shapes = {port.get_any_name(): ov.PartialShape(list(inputs[name].shape))
                      for port in converted.inputs for name in port.get_names() if name in inputs}
            converted.reshape(shapes)  # static shapes: this configuration's own
        except Exception as exc:  # noqa: BLE001
            raise classified_failure("compilation", exc) from exc
        runnable = _quantized(converted, spec, calibration)
        try:
            compiled = core().compile_model(runnable, "CPU", self.compile_properties(spec))
        except Exception as exc:  # noqa: BLE001
            raise classified_failure("compilation", exc) from exc
        del runnable  # the compiled model holds what it needs
        cache_write_s = 0.0
        if entry is not None and not from_cache:
            # saved after the reshape and a compilation that worked: the cached graph is the one compiled here,
            # written while the torch weights it shares memory with are alive (a no-op reshape on reading)
            cache_write_s = save_cached(converted, entry)
        check_threads(compiled)
        runner = OpenVINORunner(compiled, inputs, model, from_cache=from_cache)
        runner.cache_write_s = cache_write_s
        return runner


    def generation_caches(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.openvino.generate import generation_caches

        return generation_caches(device_kind) if self.available(device_kind)[0] else ()

    def generation_precisions(self, device_kind: str) -> tuple[str, ...]:
        from hwbench_pipeline.bench.backends.openvino.generate import GENERATION_PRECISIONS

        if not self.generation_caches(device_kind):
            return ()
        return tuple(s for s in GENERATION_PRECISIONS if self.unsupported_reason(s, device_kind) is None)

    def prepare_generator(self, model: Any, inputs: dict[str, Any], device: str, precision: str, *,
                          max_new_tokens: int, cache: str) -> Any:
        """The decode-step graph converted, made stateful and compiled for the CPU (generate.py)."""
        from hwbench_pipeline.bench.backends.openvino.generate import prepare_generator

        return prepare_generator(model, inputs, device, precision, max_new_tokens=max_new_tokens, cache=cache)


BACKEND = OpenVINOBackend()
