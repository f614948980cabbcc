"""Tests for the ONNX Runtime backend: real exports and real sessions on the CPU, no mocks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.backends import backend_available, load_backend
from hwbench_pipeline.bench.backends.onnxruntime.backend import BACKEND
from hwbench_pipeline.bench.backends.onnxruntime.config import TMP_PREFIX
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
    assert BACKEND.precisions("cpu") == ("fp32",)
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
