"""OpenVINO backend: real conversions and runs of every family at preset tiny (no mocks)."""

from __future__ import annotations

import pytest
import torch

from hwbench_pipeline.bench.backends import backend_available, load_backend  # noqa: I001 - before openvino

BACKEND = load_backend("openvino")  # imported first, as the engine does (it masks openvino's telemetry)
pytest.importorskip("openvino")

from hwbench_pipeline.bench import models  # noqa: E402
from hwbench_pipeline.bench.backends.openvino.config import RAN_PRECISIONS  # noqa: E402
from hwbench_pipeline.bench.failures import BenchmarkFailure, classify  # noqa: E402
from hwbench_pipeline.bench.profiles import effective_seq_len  # noqa: E402
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration  # noqa: E402
from hwbench_pipeline.bench.trackers.stats import StoppingRule  # noqa: E402

MUST_RUN = {"bert", "vit", "llama", "whisper"}
CLASSIFIED = {"unsupported_operator", "export_error", "unsupported_configuration"}


def _call(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_available_precisions_tolerance():
    import openvino as ov

    assert BACKEND.name == "openvino"
    assert backend_available("openvino", "cpu") == (True, "")
    for kind in ("cuda", "rocm"):
        ok, why = BACKEND.available(kind)
        assert not ok and "target-key scheme" in why
    assert BACKEND.available("tpu")[0] is False
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    expected = ("fp32", "bf16") if "BF16" in capabilities else ("fp32",)
    assert BACKEND.precisions("cpu") == expected
    assert BACKEND.precisions("cuda") == ()
    assert 0 < BACKEND.tolerance("fp32") < BACKEND.tolerance("bf16")


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


def test_precisions_it_cannot_run_are_refused():
    model = torch.nn.Linear(4, 2)
    for precision in ("fp16", "int8") + (() if "bf16" in BACKEND.precisions("cpu") else ("bf16",)):
        with pytest.raises(BenchmarkFailure) as info:
            BACKEND.prepare(model, {"input": torch.randn(1, 4)}, _call, "cpu", precision)
        assert info.value.failure_class == "unsupported_configuration"
        assert precision in str(info.value)


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
