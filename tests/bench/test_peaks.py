import pytest

from hwbench_pipeline.assets.hardware import peak_columns
from hwbench_pipeline.bench.peaks import (
    GEMM_N_START,
    compare_with_peak,
    free_memory_bytes,
    gemm_size,
    gemm_size_limit,
    measure_peaks,
)
from hwbench_pipeline.bench.precision import PRECISIONS
from hwbench_pipeline.warehouse.schema import HARDWARE_TARGETS

# small multiplies and buffers: the tests check what is measured and how, not how fast this host is
SMALL = {"gemm_n": 128, "copy_mib": 8}


def test_the_peak_gemm_may_grow_as_far_as_memory_allows_not_to_a_fixed_cap():
    # an 80 GB GPU: three 32768² fp32 matrices (12 GiB) fit in a quarter of it, 65536² would not
    assert gemm_size_limit(80e9) == 32768
    assert gemm_size_limit(1e9) == 4096
    assert gemm_size_limit(0) == GEMM_N_START


def test_the_chosen_gemm_is_a_power_of_two_within_the_memory_limit():
    n = gemm_size("cpu")
    assert n >= GEMM_N_START and n & (n - 1) == 0
    assert n <= gemm_size_limit(free_memory_bytes("cpu"))


@pytest.mark.parametrize(("backend", "kernel"), [
    ("torch", "torch _int_mm"),
    ("onnxruntime", "onnxruntime MatMulInteger"),
    # the CPU plugin's own report of the layer it ran: a FullyConnected on u8/i8 operands
    ("openvino", "openvino FullyConnected "),
])
def test_the_int8_peak_is_measured_with_the_int8_gemm_of_the_targets_own_runtime(backend, kernel):
    peaks = measure_peaks("cpu", ("int8-dynamic", "int8-static"), 1, backend=backend, **SMALL)
    # both int8 recipes are one number format, measured once
    assert list(peaks["compute_gflops"]) == ["int8"]
    int8 = peaks["compute_gflops"]["int8"]
    assert int8["library"].startswith(kernel), int8["library"]
    assert int8["value"] > 0
    assert peaks["backend"] == backend


def test_the_backend_chooses_only_the_int8_gemm_and_float_peaks_keep_the_best_library():
    peaks = measure_peaks("cpu", ("fp32", "int8"), 1, backend="onnxruntime", **SMALL)
    assert peaks["compute_gflops"]["fp32"]["library"] in ("torch", "numpy")
    assert peaks["compute_gflops"]["int8"]["library"].startswith("onnxruntime")
    assert peaks["copy_gbps"]["value"] > 0


def test_another_runtimes_int8_peak_on_a_known_device_times_only_its_gemm():
    peaks = measure_peaks("cpu", ("int8",), 1, backend="openvino", gemm_n=SMALL["gemm_n"], copy_mib=0)
    assert peaks["copy_gbps"] is None and peaks["gemm_n"] == SMALL["gemm_n"]
    assert peaks["compute_gflops"]["int8"]["value"] > 0


def test_an_int8_row_gets_its_percent_of_peak_from_the_int8_peak_not_the_fp32_one():
    ort = peak_columns(measure_peaks("cpu", ("fp32", "int8-dynamic"), 1, backend="onnxruntime", **SMALL))
    assert set(ort) <= set(HARDWARE_TARGETS.names)  # the warehouse has a column for every peak
    # a real int8 throughput to compare: torch's int8 GEMM on the same host
    torch_int8 = measure_peaks("cpu", ("int8",), 1, **SMALL)["compute_gflops"]["int8"]["value"]
    rows = [{"status": "ok", "precision_ran": "int8", "achieved_gflops": torch_int8},
            {"status": "ok", "precision_ran": "fp32", "achieved_gflops": ort["peak_gflops_fp32"]}]
    compare_with_peak(rows, {p: ort[f"peak_gflops_{p}"] for p in PRECISIONS})
    assert rows[0]["pct_of_peak"] == pytest.approx(100 * torch_int8 / ort["peak_gflops_int8"])
    assert rows[1]["pct_of_peak"] == pytest.approx(100.0)
