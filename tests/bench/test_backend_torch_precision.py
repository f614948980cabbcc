"""torch backend precisions: int8 through torchao really runs int8, bf16/fp16 follow CPU detection (no mocks)."""

from __future__ import annotations

import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.backends.torch.backend import cpu_native_support
from hwbench_pipeline.bench.backends.torch.config import NATIVE_CPU_FEATURES
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.precision import CALIBRATION_BATCHES, SPECS, PrecisionError

BACKEND = load_backend("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bert_tiny(batch: int = 2, seq: int = 8):
    config = models.build_config("bert", "tiny")
    model = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", config, batch, seq)
    calibration = [models.make_inputs("bert", config, batch, seq, seed=1 + i) for i in range(CALIBRATION_BATCHES)]
    with torch.inference_mode():
        reference = models.forward(model, inputs).float()
    return model, inputs, calibration, reference


def _relative_diff(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output - reference).abs().max() / reference.abs().max())


def _linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _ran_int_mm(runner) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        runner()
    return any(event.key == "aten::_int_mm" for event in prof.key_averages())


def _skip_unless_offered(spec: str) -> None:
    reason = BACKEND.unsupported_reason(spec, "cpu")
    if reason is not None:
        model, inputs, calibration, _ = _bert_tiny()
        with pytest.raises(UnsupportedConfigurationError) as refused:
            BACKEND.prepare(model, inputs, models.forward, "cpu", spec, calibration=calibration)
        assert reason in str(refused.value) and "\n" not in str(refused.value)
        pytest.skip(f"{spec} refused here: {reason}")


def test_int8_dynamic_runs_int8_linear_weights_and_int8_matmuls_within_tolerance_on_bert_tiny():
    _skip_unless_offered("int8-dynamic")
    from torchao.quantization import Int8Tensor

    model, inputs, _, reference = _bert_tiny()
    runner = BACKEND.prepare(model, inputs, models.forward, "cpu", "int8")  # int8 is int8-dynamic
    try:
        assert runner.precision == "int8"
        weights = [linear.weight for linear in _linears(runner.model).values()]
        assert weights and all(isinstance(w, Int8Tensor) and w.qdata.dtype == torch.int8 for w in weights)
        assert _ran_int_mm(runner)
        diff = _relative_diff(runner.output(), reference)
        # quantization changes the output (it is not fp32 under another name), within the stated bound
        assert 0 < diff < BACKEND.tolerance("int8-dynamic") == BACKEND.tolerance(runner.precision)
    finally:
        runner.release()


def test_int8_static_scales_come_from_the_calibration_batches_or_it_is_refused_with_the_reason():
    _skip_unless_offered("int8-static")
    from torchao.utils import should_reduce_range

    model, inputs, calibration, reference = _bert_tiny()
    # what each Linear's input reached over the calibration batches, observed on an identical fp32 model
    observed: dict[str, float] = {}
    twin = models.build_model("bert", "tiny")
    handles = [m.register_forward_pre_hook(
        lambda m, args, name=name: observed.__setitem__(name, max(observed.get(name, 0.0), float(args[0].abs().max()))))
        for name, m in _linears(twin).items()]
    with torch.inference_mode():
        for batch in calibration:
            models.forward(twin, batch)
    for handle in handles:
        handle.remove()
    qmax = 63 if should_reduce_range(torch.device("cpu")) else 127

    runner = BACKEND.prepare(model, inputs, models.forward, "cpu", "int8-static", calibration=calibration)
    try:
        assert runner.precision == "int8"
        scales = {name: float(m.weight.act_quant_scale) for name, m in _linears(runner.model).items()}
        assert scales.keys() == observed.keys()
        for name, scale in scales.items():
            assert scale == pytest.approx(observed[name] / qmax, rel=1e-6), name
        assert _ran_int_mm(runner)
        assert 0 < _relative_diff(runner.output(), reference) < BACKEND.tolerance("int8-static")
    finally:
        runner.release()


def test_int8_static_without_calibration_batches_is_refused_in_one_line():
    _skip_unless_offered("int8-static")
    model, inputs, _, _ = _bert_tiny()
    with pytest.raises(UnsupportedConfigurationError) as refused:
        BACKEND.prepare(model, inputs, models.forward, "cpu", "int8-static")
    assert "calibration" in str(refused.value) and "\n" not in str(refused.value)


def test_a_model_that_is_mostly_convolutions_is_refused_for_int8_rather_than_labelled_int8():
    _skip_unless_offered("int8-dynamic")
    # 9216 conv weights, 4608 Linear ones: a third of the model would become int8
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3), torch.nn.Flatten(), torch.nn.Linear(64 * 6 * 6, 2))
    model.requires_grad_(False).eval()
    with pytest.raises(UnsupportedConfigurationError) as refused:
        BACKEND.prepare(model, {"x": torch.randn(2, 16, 8, 8)}, lambda m, i: m(i["x"]), "cpu", "int8-dynamic")
    assert "became int8" in str(refused.value) and "\n" not in str(refused.value)


def test_an_unknown_precision_spec_is_a_one_line_precision_error():
    model, inputs, _, _ = _bert_tiny()
    calls = (lambda: BACKEND.unsupported_reason("int4", "cpu"), lambda: BACKEND.tolerance("int4"),
             lambda: BACKEND.prepare(model, inputs, models.forward, "cpu", "int4"))
    for call in calls:
        with pytest.raises(PrecisionError) as unknown:
            call()
        assert "int4" in str(unknown.value) and "\n" not in str(unknown.value)


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
def test_bf16_and_fp16_on_the_cpu_are_offered_exactly_where_native_arithmetic_is_detected(fmt):
    native, detected = cpu_native_support(fmt)
    reason = BACKEND.unsupported_reason(fmt, "cpu")
    assert (fmt in BACKEND.precisions("cpu")) == native == (reason is None)
    if reason is not None:
        assert reason.startswith(f"this CPU has no native {fmt} (") and detected in reason and "\n" not in reason
    # independently of the backend: no native feature flag, no offer
    caps = dict(torch.cpu.get_capabilities())
    arch = "arm64" if str(caps.get("architecture", "")).lower() in ("arm64", "aarch64") else "x86_64"
    if not any(caps.get(name, False) for name in NATIVE_CPU_FEATURES[fmt][arch]):
        assert not native and reason is not None


def test_cpu_precisions_are_the_specs_without_a_reason_and_gpus_keep_their_float_formats():
    assert BACKEND.precisions("cpu") == tuple(s for s in SPECS if BACKEND.unsupported_reason(s, "cpu") is None)
    assert BACKEND.precisions("cpu")[0] == "fp32"
    assert BACKEND.precisions("cuda") == BACKEND.precisions("rocm") == ("fp32", "bf16", "fp16")
    for spec in ("int8-dynamic", "int8-static"):
        reason = BACKEND.unsupported_reason(spec, "cuda")
        assert reason is not None and "not offered" in reason and "\n" not in reason
    assert BACKEND.precisions("tpu") == ()
    assert BACKEND.tolerance("fp32") < BACKEND.tolerance("int8-dynamic") <= BACKEND.tolerance("int8-static") < 0.5


@pytest.mark.parametrize("quantization", ["dynamic", "static"])
def test_an_int8_inference_row_reports_int8_ran_and_passes_the_agreement_check(quantization):
    from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
    from hwbench_pipeline.bench.trackers.stats import StoppingRule

    spec = f"int8-{quantization}"
    cfg = InferenceConfig("bert", "tiny", "cpu-torch", 1, 16, threads=1, precision="int8", quantization=quantization,
                          rule=StoppingRule(max_seconds=0.2, warmup_max_seconds=0.1, processes=1, max_processes=1))
    row = run_configuration(cfg, "test")
    reason = BACKEND.unsupported_reason(spec, "cpu")
    if reason is not None:
        assert row["failure_class"] == "unsupported_configuration" and reason in row["message"]
        return
    assert row["status"] == "ok", row.get("message")
    assert row["precision_ran"] == "int8" and 0 < row["max_rel_diff"] < BACKEND.tolerance(spec)
