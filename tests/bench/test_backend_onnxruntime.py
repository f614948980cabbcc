"""Tests for the ONNX Runtime backend: real exports and real sessions on the CPU, no mocks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import backend_available, load_backend
from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV
from hwbench_pipeline.bench.backends.onnxruntime.backend import BACKEND
from hwbench_pipeline.bench.backends.onnxruntime.config import CACHE_ENTRY, TMP_PREFIX
from hwbench_pipeline.bench.backends.onnxruntime.quantize import derive
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError
from hwbench_pipeline.bench.hardware import detect_targets
from hwbench_pipeline.bench.profiles import effective_seq_len
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule

CLASSIFIED = {"export_error", "unsupported_operator", "unsupported_configuration"}
MUST_RUN = {"bert", "vit", "llama", "whisper"}
RULE = StoppingRule(max_seconds=0.3, warmup_max_seconds=0.2, processes=1, max_processes=1)


def _call(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs)


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """Exports go to a directory of this test's own, so what is left behind can be checked."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _exports_left(directory: Path) -> list[Path]:
    return list(directory.glob(f"{TMP_PREFIX}*"))  # torch.export may leave its own caches beside them


@pytest.mark.parametrize("family", list(models.FAMILIES))
def test_every_family_runs_or_fails_classified(family, own_tmp):
    seq = effective_seq_len(family, "tiny", 16)
    cfg = InferenceConfig(family, "tiny", "cpu-onnxruntime", 1, seq, threads=1, rule=RULE)
    row = run_configuration(cfg, "test")
    if row["status"] == "ok":
        assert row["backend"] == "onnxruntime" and row["precision_ran"] == "fp32"
        assert row["max_rel_diff"] < BACKEND.tolerance("fp32")
        assert row["p50_ms"] > 0 and row["n_samples"] >= 1
        assert row["device_peak_mb"] is None
    else:
        assert row["failure_class"] in CLASSIFIED, row["message"]
        assert "ONNX export failed" in row["message"] or "onnxruntime" in row["message"]
    assert family not in MUST_RUN or row["status"] == "ok", row.get("message")
    assert not _exports_left(own_tmp), "the exported model was not removed"


class _SpecialFunction(torch.nn.Module):
    """Uses the scaled Bessel function i0e, which neither ONNX exporter translates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0e(x) + 1


def test_export_failure_is_classified_with_both_messages(own_tmp):
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(_SpecialFunction(), {"x": torch.randn(2, 3)}, _call, "cpu", "fp32")
    message = str(info.value)
    assert info.value.failure_class == "unsupported_operator"
    assert "ONNX export failed" in message
    assert "dynamo exporter" in message and "torchscript exporter" in message
    assert "i0e" in message  # says which operator
    assert "Next steps" not in message  # the exporter's advice is cut, not the cause
    assert not _exports_left(own_tmp), "the failed export was not cleaned up"


class _UnusedInput(torch.nn.Module):
    """One input is never used (an exporter may drop it); the tensor check is a runtime assertion the dynamo
    exporter has no translation for in torch 2.13, so this may take the TorchScript fallback."""

    def forward(self, a: torch.Tensor, unused: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        torch._check_tensor_all(a == a)
        return a * 2 + b


def test_runner_feeds_only_the_graphs_inputs_and_releases(own_tmp):
    torch.set_num_threads(1)
    inputs = {"a": torch.randn(3, 4), "unused": torch.randn(5), "b": torch.randn(3, 4)}
    runner = BACKEND.prepare(_UnusedInput(), inputs, _call, "cpu", "fp32")
    try:
        declared = tuple(arg.name for arg in runner.session.get_inputs())
        assert runner.input_names == declared
        assert set(declared) <= set(inputs) and {"a", "b"} <= set(declared)
        assert runner.exporter in ("dynamo", "torchscript")
        assert runner.precision == "fp32"
        assert runner.session.get_providers() == ["CPUExecutionProvider"]
        assert isinstance(runner(), np.ndarray)
        out = runner.output()
        assert out.dtype == torch.float32 and out.device.type == "cpu"
        torch.testing.assert_close(out, inputs["a"] * 2 + inputs["b"])
        assert runner.peak_memory_mb() is None
        assert _exports_left(own_tmp), "the model file should live until release"
    finally:
        runner.release()
    assert not _exports_left(own_tmp)
    runner.release()  # idempotent


def test_session_threads_follow_torch():
    torch.set_num_threads(1)
    runner = BACKEND.prepare(torch.nn.Linear(4, 2).eval(), {"input": torch.randn(1, 4)}, _call, "cpu", "fp32")
    try:
        options = runner.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.inter_op_num_threads == 1
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    finally:
        runner.release()


def test_precision_and_device_refused():
    fp16 = () if BACKEND.unsupported_reason("fp16", "cpu") else ("fp16",)
    assert BACKEND.precisions("cpu") == ("fp32", *fp16, "int8-dynamic", "int8-static")
    with pytest.raises(UnsupportedConfigurationError, match="bf16"):
        BACKEND.prepare(torch.nn.Linear(4, 2), {"input": torch.randn(1, 4)}, _call, "cpu", "bf16")
    with pytest.raises(UnsupportedConfigurationError):
        BACKEND.prepare(torch.nn.Linear(4, 2), {"input": torch.randn(1, 4)}, _call, "mps", "fp32")
    row = run_configuration(InferenceConfig("bert", "tiny", "cpu-onnxruntime", 1, 8, precision="bf16",
                                            threads=1, rule=RULE), "test")
    assert row["status"] == "failed" and row["failure_class"] == "unsupported_configuration"


def test_availability_here():
    assert load_backend("onnxruntime") is BACKEND
    assert BACKEND.available("cpu") == (True, "")
    ok, why = BACKEND.available("cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert ok
    else:
        assert not ok and "CUDAExecutionProvider" in why and "onnxruntime-gpu" in why
    assert BACKEND.available("mps")[0] is False and BACKEND.available("mps")[1]
    assert backend_available("onnxruntime", "cpu") == (True, "")
    assert "cpu-onnxruntime" in [target.key for target in detect_targets()]


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available(),
                    reason="needs onnxruntime-gpu and a CUDA device")
def test_cuda_runs_bert():
    cfg = InferenceConfig("bert", "tiny", "cuda0-onnxruntime", 1, 16, threads=1, rule=RULE)
    row = run_configuration(cfg, "test")
    assert row["status"] == "ok", row.get("message")
    assert row["max_rel_diff"] < BACKEND.tolerance("fp32") and row["p50_ms"] > 0


def test_io_binding_path_on_the_host(own_tmp):
    """The CUDA runner's IO-binding path (bound device inputs, device outputs, synchronize, copy back),
    exercised with ORT's cpu device so it runs on every host."""
    from hwbench_pipeline.bench.backends.onnxruntime.backend import OnnxRuntimeRunner

    torch.set_num_threads(1)
    inputs = {"a": torch.randn(3, 4), "unused": torch.randn(5), "b": torch.randn(3, 4)}
    host = BACKEND.prepare(_UnusedInput(), inputs, _call, "cpu", "fp32")
    bound = OnnxRuntimeRunner(host.session, inputs, own_tmp / f"{TMP_PREFIX}bound", host.exporter, ("cpu", 0))
    try:
        assert bound.input_names == host.input_names
        bound()
        torch.testing.assert_close(bound.output(), inputs["a"] * 2 + inputs["b"])
        torch.testing.assert_close(bound.output(), host.output())
    finally:
        bound.release()
        host.release()
    assert not _exports_left(own_tmp)


# ----------------------------------------------------------------------------------------------------------
# Precision paths: fp16 and int8 models derived from the fp32 export with ONNX Runtime's own tools
# ----------------------------------------------------------------------------------------------------------

INTEGER_OPS = {"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm",
               "QLinearConv", "ConvInteger"}


def test_precisions_offered_and_refused_say_why():
    for spec in ("fp32", "int8-dynamic", "int8-static", "int8"):
        assert BACKEND.unsupported_reason(spec, "cpu") is None
    fp16 = BACKEND.unsupported_reason("fp16", "cpu")  # decided by a probe: see the fp16 test below
    assert fp16 is None or "no fp16 MatMul kernel" in fp16
    bf16 = BACKEND.unsupported_reason("bf16", "cpu")
    assert "bf16" in bf16 and "MatMul" in bf16 and "CPUExecutionProvider" in bf16  # what the probe found
    assert BACKEND.precisions("cuda") == ("fp32", "fp16")
    assert "TensorRT" in BACKEND.unsupported_reason("int8-static", "cuda")
    assert BACKEND.precisions("rocm") == ("fp32",)
    assert BACKEND.precisions("mps") == () and "mps" in BACKEND.unsupported_reason("fp32", "mps")
    assert "unknown precision" in BACKEND.unsupported_reason("int4", "cpu")
    assert BACKEND.tolerance("int8") == BACKEND.tolerance("int8-dynamic")  # the alias
    assert BACKEND.tolerance("fp32") < BACKEND.tolerance("fp16") < BACKEND.tolerance("int8-dynamic")


@pytest.fixture(scope="module")
def bert_tiny(tmp_path_factory) -> dict:
    """bert tiny, its inputs, calibration batches made with other seeds, its torch output, and an export cache
    directory, so that the module exports it once."""
    config = models.build_config("bert", "tiny")
    model = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", config, 1, 16, seed=0)
    calibration = [models.make_inputs("bert", config, 1, 16, seed=seed) for seed in (1, 2, 3, 4)]
    with torch.inference_mode():
        reference = models.forward(model, inputs).float()
    return {"model": model, "inputs": inputs, "calibration": calibration, "reference": reference,
            "cache": tmp_path_factory.mktemp("export-cache")}


@pytest.fixture
def cached(bert_tiny, own_tmp, monkeypatch) -> dict:
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(bert_tiny["cache"]))
    torch.set_num_threads(1)
    return bert_tiny


def _prepare(case: dict, spec: str):
    return BACKEND.prepare(case["model"], case["inputs"], models.forward, "cpu", spec,
                           calibration=case["calibration"])


def _relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output - reference).abs().max() / reference.abs().max())


def _executed_graph(model_path: Path, directory: Path) -> onnx.GraphProto:
    """The graph ORT executes for that model on the CPU, written by a session of this test's own."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(directory / "executed.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(directory / "executed.onnx"), load_external_data=False).graph


@pytest.mark.parametrize("spec", ["int8-dynamic", "int8-static"])
def test_int8_runs_integer_kernels_within_its_tolerance(cached, spec, tmp_path):
    runner = _prepare(cached, spec)
    try:
        assert runner.precision == "int8"
        assert set(runner.heavy_ops) == {"int8"}
        executed = {node.op_type for node in _executed_graph(runner.model_path, tmp_path).node}
        assert executed & INTEGER_OPS, executed
        assert "DynamicQuantizeLinear" in executed if spec == "int8-dynamic" else "QuantizeLinear" in executed
        error = _relative_error(runner.output(), cached["reference"])
        assert 1e-4 < error < BACKEND.tolerance(spec)  # above fp32's last-bit noise: the int8 path ran
    finally:
        runner.release()


def test_fp16_is_offered_only_where_the_cpu_provider_runs_the_converted_matmuls_in_fp16(cached, tmp_path):
    _prepare(cached, "fp32").release()  # the fp32 export, in the cache, is what fp16 is converted from
    source = next((cached["cache"] / CACHE_ENTRY).rglob("model.onnx"))
    path, _ = derive("fp16", source, tmp_path / "fp16")
    derived = onnx.load(str(path), load_external_data=False).graph
    assert {t.data_type for t in derived.initializer} >= {onnx.TensorProto.FLOAT16}  # it was converted
    executed = _executed_graph(path, tmp_path)
    weights = {t.name: t.data_type for t in executed.initializer}
    # the dtype of the weights the executed MatMul/Gemm nodes multiply by: the CPU provider casts an fp16 node
    # without a kernel back to fp32 (x86 has none), a provider with fp16 kernels keeps them
    ran = {weights[name] for node in executed.node if node.op_type in ("MatMul", "Gemm")
           for name in node.input[:2] if name in weights}
    reason = BACKEND.unsupported_reason("fp16", "cpu")
    if ran == {onnx.TensorProto.FLOAT16}:
        assert reason is None
        runner = _prepare(cached, "fp16")
        try:
            assert runner.precision == "fp16"
            error = _relative_error(runner.output(), cached["reference"])
            assert 1e-5 < error < BACKEND.tolerance("fp16")  # fp16-rounded weights and activations
        finally:
            runner.release()
    else:
        assert ran == {onnx.TensorProto.FLOAT} and "ran in fp32" in reason
        with pytest.raises(UnsupportedConfigurationError, match="no fp16 MatMul kernel"):
            _prepare(cached, "fp16")


def test_derived_models_live_in_the_runners_directory_and_the_cache_keeps_fp32_only(cached, own_tmp):
    fp32 = _prepare(cached, "fp32")
    fp32.release()
    entry = sorted(p.relative_to(cached["cache"]) for p in (cached["cache"] / CACHE_ENTRY).rglob("*"))
    runner = _prepare(cached, "int8-dynamic")
    try:
        assert runner.from_cache and runner.precision == "int8"
        assert _exports_left(own_tmp) and runner.model_path.is_relative_to(_exports_left(own_tmp)[0])
    finally:
        runner.release()
    assert not _exports_left(own_tmp)
    assert sorted(p.relative_to(cached["cache"]) for p in (cached["cache"] / CACHE_ENTRY).rglob("*")) == entry


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32),
                                       torch.nn.LayerNorm(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _activation_scales(model_path: Path) -> dict[str, float]:
    """The scale of every QuantizeLinear (activations: weights are stored quantized) of a QDQ model."""
    graph = onnx.load(str(model_path)).graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return {node.input[0]: float(values[node.input[1]]) for node in graph.node if node.op_type == "QuantizeLinear"}


def test_static_scales_come_from_the_calibration_batches(own_tmp, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(own_tmp / "cache"))  # one export, three quantizations
    model, x = _Mlp().eval(), torch.randn(4, 32)
    small = [{"x": torch.randn(4, 32, generator=torch.Generator().manual_seed(seed))} for seed in (1, 2)]
    large = [{"x": batch["x"] * 10} for batch in small]
    scales = []
    for calibration in (small, small, large):
        runner = BACKEND.prepare(model, {"x": x}, _call, "cpu", "int8-static", calibration=calibration)
        try:
            assert runner.precision == "int8"
            scales.append(_activation_scales(runner.model_path))
        finally:
            runner.release()
    assert scales[0] and scales[0] == scales[1]  # the same batches give the same scales
    first = next(iter(scales[0]))  # the input's scale: 10x the range, 10x the scale
    assert scales[2][first] == pytest.approx(10 * scales[0][first], rel=1e-5)
    with pytest.raises(UnsupportedConfigurationError, match="calibration"):
        BACKEND.prepare(model, {"x": x}, _call, "cpu", "int8-static")
    assert not _exports_left(own_tmp)


def test_a_failing_quantization_is_one_classified_line(own_tmp):
    torch.set_num_threads(1)
    model, x = _Mlp().eval(), torch.randn(4, 32)
    # batches of another shape than the exported graph's static one: ORT's calibration session rejects them
    calibration = [{"x": torch.randn(3, 7)}]
    with pytest.raises(BenchmarkFailure) as info:
        BACKEND.prepare(model, {"x": x}, _call, "cpu", "int8-static", calibration=calibration)
    assert info.value.failure_class == "export_error"
    message = str(info.value)
    assert message.startswith("onnxruntime int8-static quantization failed: ") and "\n" not in message
    assert "Traceback" not in message and len(message) < 600
    assert not _exports_left(own_tmp)


def test_quantizer_advice_is_captured_not_printed(own_tmp, capfd):
    from hwbench_pipeline.bench.backends.onnxruntime.quantize import captured_logs, quantize_dynamic_model

    torch.set_num_threads(1)
    fp32 = BACKEND.prepare(_Mlp().eval(), {"x": torch.randn(4, 32)}, _call, "cpu", "fp32")
    try:
        capfd.readouterr()
        with captured_logs() as lines:  # the export as it is, not pre-processed: ORT advises pre-processing
            quantize_dynamic_model(fp32.model_path, own_tmp / "q.onnx")
        assert any("pre-processing" in line for line in lines)
        assert "pre-processing" not in capfd.readouterr().err
    finally:
        fp32.release()
