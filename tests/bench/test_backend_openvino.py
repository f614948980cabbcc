"""OpenVINO backend: real conversions, quantizations and runs at preset tiny (no mocks).

Expectations about precisions come from what this CPU reports (the plugin's OPTIMIZATION_CAPABILITIES, the
kernel's VNNI flags), so the tests hold on any x86 CPU, with or without bf16, fp16 or AMX.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwbench_pipeline.bench.backends import backend_available, load_backend  # noqa: I001 - before openvino

BACKEND = load_backend("openvino")  # imported first, as the engine does (it masks openvino's telemetry)
pytest.importorskip("openvino")

from hwbench_pipeline.bench import models  # noqa: E402
from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV  # noqa: E402
from hwbench_pipeline.bench.backends.openvino.backend import OpenVINORunner  # noqa: E402
from hwbench_pipeline.bench.backends.openvino.config import (  # noqa: E402
    CACHE_ENTRY,
    CACHE_MODEL,
    DYNAMIC_QUANTIZATION_GROUP_SIZE,
    RAN_PRECISIONS,
)
from hwbench_pipeline.bench.backends.openvino.quantize import compress_weights, is_transformer  # noqa: E402
from hwbench_pipeline.bench.failures import BenchmarkFailure, classify  # noqa: E402
from hwbench_pipeline.bench.precision import CALIBRATION_BATCHES, SPECS  # noqa: E402
from hwbench_pipeline.bench.profiles import effective_seq_len  # noqa: E402
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration  # noqa: E402
from hwbench_pipeline.bench.trackers.stats import StoppingRule  # noqa: E402

MUST_RUN = {"bert", "vit", "llama", "whisper"}
CLASSIFIED = {"unsupported_operator", "export_error", "unsupported_configuration"}


def _call(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _capabilities() -> list[str]:
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def _dynamic_int8_expected() -> bool | None:
    """Whether the CPU plugin's dynamic activation quantization can run here: its x86 kernel needs AVX2-VNNI or
    AVX512-VNNI (on AVX512 cores). None where the flags cannot be read."""
    flags = _cpu_flags()
    if flags is None:
        return None
    return "avx_vnni" in flags or {"avx512_vnni", "avx512bw", "avx512vl"} <= flags


#: the number format each spec's heavy ops run in where the spec is offered
FORMATS = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8-dynamic": "int8", "int8-static": "int8"}


def _bert(batch: int = 2, seq: int = 8):
    config = models.build_config("bert", "tiny")
    model = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", config, batch, seq)
    calibration = [models.make_inputs("bert", config, batch, seq, seed=s) for s in range(1, CALIBRATION_BATCHES + 1)]
    return model, inputs, calibration


def _fully_connected(compiled) -> list[tuple[str, str]]:
    """(activation, weights) element types of each FullyConnected in the runtime graph."""
    ops = [op for op in compiled.get_runtime_model().get_ops()
           if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"]
    return [(op.get_input_element_type(0).get_type_name(), op.get_input_element_type(1).get_type_name())
            for op in ops]


def test_available_precisions_tolerance():
    assert BACKEND.name == "openvino"
    assert backend_available("openvino", "cpu") == (True, "")
    for kind in ("cuda", "rocm"):
        ok, why = BACKEND.available(kind)
        assert not ok and "target-key scheme" in why
    assert BACKEND.available("tpu")[0] is False
    capabilities = _capabilities()
    offered = BACKEND.precisions("cpu")
    assert offered[0] == "fp32"
    assert ("bf16" in offered) == ("BF16" in capabilities)
    assert ("fp16" in offered) == ("FP16" in capabilities)
    assert ("int8-static" in offered) == ("INT8" in capabilities)
    if (dynamic := _dynamic_int8_expected()) is not None:
        assert ("int8-dynamic" in offered) == (dynamic and "INT8" in capabilities)
    assert offered == tuple(s for s in SPECS if BACKEND.unsupported_reason(s, "cpu") is None)
    assert BACKEND.precisions("cuda") == ()
    assert 0 < BACKEND.tolerance("fp32") < BACKEND.tolerance("bf16") <= BACKEND.tolerance("int8-static")
    # a runner reports the bare format: int8 gets the loosest bound of the int8 recipes
    assert BACKEND.tolerance("int8") == max(BACKEND.tolerance("int8-dynamic"), BACKEND.tolerance("int8-static"))


@pytest.mark.parametrize("spec", SPECS)
def test_each_offered_precision_runs_its_heavy_ops_in_that_format_and_records_it(spec, capfd):
    if spec not in BACKEND.precisions("cpu"):
        pytest.skip(f"not offered here: {BACKEND.unsupported_reason(spec, 'cpu')}")
    model, inputs, calibration = _bert()
    with torch.inference_mode():
        reference = models.forward(model, inputs)
    runner = BACKEND.prepare(model, inputs, models.forward, "cpu", spec, calibration=calibration)
    try:
        assert runner.precision == FORMATS[spec]
        layers = _fully_connected(runner._compiled)
        assert layers  # bert tiny has 12 (an AMX CPU may fuse q, k and v into one QKVProjection in bf16)
        activations = {a for a, _ in layers}
        group = int(runner._compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE"))
        if spec == "int8-static":
            assert activations <= {"u8", "i8"} and {w for _, w in layers} == {"i8"}
        elif spec == "int8-dynamic":  # int8 weights, activations quantized by the plugin per call
            assert activations == {"f32"} and {w for _, w in layers} <= {"u8", "i8"}
            assert group == DYNAMIC_QUANTIZATION_GROUP_SIZE
        else:
            assert activations == {{"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[spec]}
        if spec != "int8-dynamic":
            assert group == 0  # nothing else quantizes activations
        out = runner.output()
        assert float((out - reference).abs().max() / reference.abs().max()) < BACKEND.tolerance(spec)
    finally:
        runner.release()
    # NNCF's progress bars and info tables stay out of the worker's output
    captured = capfd.readouterr()
    assert "nncf" not in captured.out.lower() and "\u2501" not in captured.out + captured.err


def test_int8_dynamic_quantizes_activations_per_call_not_only_weights():
    """The runtime graph of int8 weights looks the same with and without dynamic quantization: the outputs
    differ only where the plugin really quantizes the activations."""
    import numpy as np
    import openvino as ov

    if "int8-dynamic" not in BACKEND.precisions("cpu"):
        pytest.skip(f"not offered here: {BACKEND.unsupported_reason('int8-dynamic', 'cpu')}")
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(96, 192), torch.nn.GELU(), torch.nn.Linear(192, 96)).eval()
    x = torch.randn(8, 96)
    compressed = compress_weights(ov.convert_model(mlp, example_input=x))
    outputs, graphs = [], []
    for group in (DYNAMIC_QUANTIZATION_GROUP_SIZE, 0):
        properties = {**BACKEND.compile_properties("int8-dynamic"), "DYNAMIC_QUANTIZATION_GROUP_SIZE": group}
        compiled = ov.Core().compile_model(compressed, "CPU", properties)
        outputs.append(compiled({0: x.numpy()})[0])
        graphs.append(_fully_connected(compiled))
    assert graphs[0] == graphs[1] and {a for a, _ in graphs[0]} == {"f32"}
    assert not np.array_equal(*outputs)
    with torch.no_grad():
        reference = mlp(x).numpy()
    assert np.abs(outputs[0] - reference).max() / np.abs(reference).max() < BACKEND.tolerance("int8-dynamic")


def test_fp16_is_offered_only_where_the_plugin_runs_f16_and_an_f16_hint_records_what_ran():
    import openvino as ov

    capabilities = _capabilities()
    if "FP16" in capabilities:
        assert "fp16" in BACKEND.precisions("cpu")
    else:
        reason = BACKEND.unsupported_reason("fp16", "cpu")
        assert "OPTIMIZATION_CAPABILITIES" in reason and "without FP16" in reason
    # whatever is offered, a runner records what the plugin ran for an f16 hint, not the hint
    model, x = torch.nn.Linear(64, 64).eval(), torch.randn(8, 64)
    properties = {**BACKEND.compile_properties("fp32"), "INFERENCE_PRECISION_HINT": "f16"}
    compiled = ov.Core().compile_model(ov.convert_model(model, example_input=x), "CPU", properties)
    runner = OpenVINORunner(compiled, {"input": x}, model)
    try:
        ran = "fp16" if "FP16" in capabilities else "bf16" if "BF16" in capabilities else "fp32"
        assert runner.precision == ran
        assert RAN_PRECISIONS[compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()] == ran
        assert {RAN_PRECISIONS[a] for a, _ in _fully_connected(compiled)} == {ran}
    finally:
        runner.release()


class _BertForward(torch.nn.Module):
    """bert's forward with its inputs as named arguments, for ov.convert_model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return models.forward(self.model, {"input_ids": input_ids, "attention_mask": attention_mask,
                                           "token_type_ids": token_type_ids})


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_graphs_with_attention_and_only_those_get_nncfs_transformer_model_type():
    import openvino as ov

    model, inputs, _ = _bert()
    # eager attention: a Softmax over the MatMul of two activations
    assert is_transformer(ov.convert_model(_BertForward(model), example_input=inputs))
    # torch's SDPA: one ScaledDotProductAttention op
    assert models.use_default_attention(model) == "sdpa"
    assert is_transformer(ov.convert_model(_BertForward(model), example_input=inputs))
    # a Softmax between two Linear layers is no attention: their MatMuls have constant weights
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Softmax(-1), torch.nn.Linear(8, 2)).eval()
    assert not is_transformer(ov.convert_model(mlp, example_input=torch.randn(2, 8)))


def test_int8_static_without_calibration_batches_is_refused():
    model, inputs, _ = _bert()
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(model, inputs, models.forward, "cpu", "int8-static")
    assert info.value.failure_class == "unsupported_configuration"
    assert "needs calibration batches" in str(info.value)


@pytest.mark.parametrize("calibration", ["another shape", "another input"])
def test_a_quantization_that_fails_is_one_classified_line(calibration):
    if "int8-static" not in BACKEND.precisions("cpu"):
        pytest.skip(f"not offered here: {BACKEND.unsupported_reason('int8-static', 'cpu')}")
    model, inputs, batches = _bert()
    if calibration == "another shape":  # the model is compiled for this configuration's static shapes
        batches = [{name: torch.cat([value, value[:, :1]], dim=1) for name, value in batches[0].items()}]
    else:
        batches = [{"pixel_values": torch.zeros(2, 3, 8, 8)}]
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(model, inputs, models.forward, "cpu", "int8-static", calibration=batches)
    assert classify(info.value) == "export_error"
    assert str(info.value).startswith("openvino int8-static quantization (nncf) failed")
    assert "\n" not in str(info.value)


def test_the_export_cache_keeps_the_fp32_model_and_int8_is_applied_after_reading_it(tmp_path, monkeypatch):
    import openvino as ov

    spec = "int8-static" if "int8-static" in BACKEND.precisions("cpu") else "int8-dynamic"
    if spec not in BACKEND.precisions("cpu"):
        pytest.skip("no int8 recipe offered here")
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(tmp_path))
    ran = []
    for _ in range(2):  # the first process converts and publishes, the second reads the cached model
        model, inputs, calibration = _bert()
        runner = BACKEND.prepare(model, inputs, models.forward, "cpu", spec, calibration=calibration)
        ran.append((runner.from_cache, runner.precision))
        runner.release()
    assert ran == [(False, "int8"), (True, "int8")]
    cached = ov.Core().read_model(tmp_path / CACHE_ENTRY / CACHE_MODEL)
    assert not {"FakeQuantize", "FakeConvert"} & {op.get_type_name() for op in cached.get_ops()}
    constants = {op.get_element_type().get_type_name() for op in cached.get_ops() if op.get_type_name() == "Constant"}
    assert "f32" in constants and not {"u8", "i8", "f16"} & constants


@pytest.mark.parametrize("family", list(models.FAMILIES))
def test_family_tiny_runs_or_fails_classified(family):
    seq = effective_seq_len(family, "tiny", 16)
    cfg = InferenceConfig(family, "tiny", "cpu-openvino", 1, seq, threads=1,
                          rule=StoppingRule(max_seconds=0.3, warmup_max_seconds=0.2, processes=1, max_processes=1))
    row = run_configuration(cfg, "test")
    if row["status"] == "ok":
        assert row["backend"] == "openvino" and row["device_kind"] == "cpu"
        assert row["precision_ran"] == "fp32"
        assert row["p50_ms"] > 0 and row["n_samples"] >= 1
        assert row["max_rel_diff"] < BACKEND.tolerance("fp32")
        assert row["device_peak_mb"] is None
    else:
        assert row["failure_class"] in CLASSIFIED, row["message"]
        assert row["message"].startswith("BenchmarkFailure: openvino ")
    if family in MUST_RUN:
        assert row["status"] == "ok", row.get("message")


def test_precision_is_read_back_from_the_compiled_model():
    config = models.build_config("bert", "tiny")
    model = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", config, 2, 8)
    runner = BACKEND.prepare(model, inputs, models.forward, "cpu", "fp32")
    try:
        compiled = runner._compiled
        reported = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        assert runner.precision == RAN_PRECISIONS[reported] == "fp32"
        # pinned to the scenario's thread count, one stream, latency hint
        assert compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads() == 1
        assert compiled.get_property("NUM_STREAMS") == 1
        assert str(compiled.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")
        # every input bound under its own name, with this configuration's static shape
        assert sorted(n for port in compiled.inputs for n in port.get_names() if n in inputs) == sorted(inputs)
        assert all(port.get_partial_shape().is_static for port in compiled.inputs)
        assert runner() is None and runner.peak_memory_mb() is None
        with torch.inference_mode():
            reference = models.forward(model, inputs)
        out = runner.output()
        assert out.dtype == torch.float32 and out.shape == reference.shape
        assert float((out - reference).abs().max() / reference.abs().max()) < BACKEND.tolerance("fp32")
    finally:
        runner.release()


def test_precisions_it_cannot_run_are_refused_with_the_reason():
    capabilities = _capabilities()
    offered = BACKEND.precisions("cpu")
    model = torch.nn.Linear(4, 2)
    for spec in (s for s in SPECS if s not in offered):
        reason = BACKEND.unsupported_reason(spec, "cpu")
        assert reason and "\n" not in reason
        if spec in ("bf16", "fp16"):  # the plugin's own report is what was detected
            assert "OPTIMIZATION_CAPABILITIES" in reason and spec.upper() not in capabilities
        with pytest.raises(BenchmarkFailure) as info:
            BACKEND.prepare(model, {"input": torch.randn(1, 4)}, _call, "cpu", spec)
        assert info.value.failure_class == "unsupported_configuration"
        assert spec in str(info.value) and reason in str(info.value)
    for spec in SPECS:
        assert "target-key scheme" in BACKEND.unsupported_reason(spec, "cuda")
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(model, {"input": torch.randn(1, 4)}, _call, "cpu", "int4")
    assert info.value.failure_class == "unsupported_configuration" and "unknown precision" in str(info.value)


class _Bessel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x) + 1


class _RoundsAShape(torch.nn.Module):
    """transformers' LLaVA-NeXT unpad_image pattern: round() on a size, which is a tensor while tracing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:]
        return x[:, : int(round(width / height, 7))]


def test_an_operator_openvino_lacks_is_unsupported_operator():
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(_Bessel(), {"x": torch.randn(2, 3)}, _call, "cpu", "fp32")
    assert classify(info.value) == "unsupported_operator"
    assert "openvino conversion failed" in str(info.value)
    assert "No conversion rule found for operations: aten::special_bessel_j0" in str(info.value)


def test_a_model_that_cannot_be_traced_is_export_error():
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(_RoundsAShape(), {"x": torch.randn(2, 3, 6)}, _call, "cpu", "fp32")
    assert classify(info.value) == "export_error"
    assert "Couldn't get TorchScript module by tracing" in str(info.value)
    assert "__round__" in str(info.value)


class _Diffs(torch.nn.Module):
    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        packed = torch.diff(ids, prepend=ids[:, :1] - 1, dim=-1)
        return torch.diff(x, n=2, dim=0).sum() + (packed != 1).cumsum(-1).float()


def test_diff_translator_matches_torch():
    """aten::diff is translated here (OpenVINO lacks it; transformers' mask code uses it, e.g. in whisper)."""
    inputs = {"ids": torch.tensor([[0, 1, 2, 0, 1], [3, 4, 5, 6, 7]]), "x": torch.randn(4, 3)}
    runner = BACKEND.prepare(_Diffs(), inputs, _call, "cpu", "fp32")
    try:
        torch.testing.assert_close(runner.output(), _Diffs()(**inputs))
    finally:
        runner.release()


def test_detect_targets_offers_cpu_openvino():
    from hwbench_pipeline.bench.hardware import detect_targets, skipped_targets

    assert "cpu-openvino" in {t.key for t in detect_targets()}
    assert "cpu-openvino" not in {key for key, _ in skipped_targets()}


def test_more_threads_than_openvino_runs_is_refused():
    import os

    torch.set_num_threads((os.cpu_count() or 1) + 1)  # the fixture restores the count
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(torch.nn.Linear(4, 2), {"input": torch.randn(1, 4)}, _call, "cpu", "fp32")
    assert info.value.failure_class == "unsupported_configuration"
    assert f"not the {torch.get_num_threads()} asked for" in str(info.value)


def test_conversion_sends_no_telemetry():
    import sys

    from openvino.tools.ovc import convert_impl

    runner = BACKEND.prepare(torch.nn.Linear(4, 2), {"input": torch.randn(1, 4)}, _call, "cpu", "fp32")
    runner.release()
    # either the package is masked (openvino fell back to its stub) or the converter was pointed at the stub
    assert sys.modules.get("openvino_telemetry") is None or convert_impl.tm.__name__.endswith("telemetry_stub")
