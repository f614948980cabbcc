"""Measured peaks of a target: the roofline every result row is compared against.

* Compute: dense matrix multiply (n × n × n, 2n³ FLOPs) per precision, in every library at hand (torch, and
  numpy's BLAS for fp32 on the CPU); the best median wins, because one library's GEMM can sit well below
  what the silicon does.
* Memory: a stream-style copy of a buffer much larger than the caches; bytes moved = read + write.

Each figure is the best of several timed repetitions after warm-up (a peak is a ceiling, so the best run is
the estimate, not the median; the spread is recorded). Runs in the measuring worker (see dispatch), so it
owns the cores like any measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

GEMM_N_START = 512
GEMM_MIN_SECONDS = 0.05  # grow n until one multiply takes this long, so call overhead is negligible
COPY_MIB = 256
REPEATS = 5


@dataclass
class PeakFigure:
    value: float  # GFLOP/s or GB/s
    spread: float  # (slowest - fastest) / slowest over the timed repetitions
    library: str


def _best_time(fn: Callable[[], object], sync: Callable[[], None], repeats: int = REPEATS) -> tuple[float, float]:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), (max(times) - min(times)) / max(times)


def _torch_gemm(device: str, dtype_name: str, n: int) -> tuple[float, float]:
    import torch

    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    best, spread = _best_time(lambda: torch.mm(a, b, out=out), lambda: _sync(device))
    return 2 * n**3 / best / 1e9, spread


def _numpy_gemm(n: int) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    best, spread = _best_time(lambda: np.matmul(a, b, out=out), lambda: None)
    return 2 * n**3 / best / 1e9, spread


def _copy_bandwidth(device: str, mib: int) -> tuple[float, float]:
    import torch

    n = mib * 2**20 // 4
    src = torch.ones(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    best, spread = _best_time(lambda: dst.copy_(src), lambda: _sync(device))
    return 2 * src.numel() * 4 / best / 1e9, spread


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def free_memory_bytes(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    from hwbench_pipeline.bench.trackers.memory import available_memory_mb

    return available_memory_mb() * 2**20


def gemm_size_limit(free_bytes: float) -> int:
    """The largest power-of-two n (at least GEMM_N_START) whose three n × n fp32 matrices, the multiply's
    operands and output, fit in a quarter of ``free_bytes``."""
    n = GEMM_N_START
    while 3 * (2 * n) ** 2 * 4 <= free_bytes / 4:
        n *= 2
    return n


def gemm_size(device: str) -> int:
    """The smallest power-of-two n from GEMM_N_START whose fp32 multiply takes GEMM_MIN_SECONDS here, timed
    from a synchronized device, within the memory limit (a fast GPU needs n of 8192 or more: at 2048 one
    multiply is a fraction of a millisecond and the launch overhead would be part of the peak)."""
    import torch

    limit = gemm_size_limit(free_memory_bytes(device))
    n = GEMM_N_START
    while n < limit:
        a = torch.randn(n, n, device=device)
        torch.mm(a, a)
        _sync(device)  # the warm-up multiply has finished before the clock starts
        t0 = time.perf_counter()
        torch.mm(a, a)
        _sync(device)
        if time.perf_counter() - t0 >= GEMM_MIN_SECONDS:
            break
        n *= 2
    return n


def measure_peaks(device: str, precisions: tuple[str, ...], threads: int, *, gemm_n: int | None = None,
                  copy_mib: int = COPY_MIB) -> dict:
    """Peak GFLOP/s per precision and copy GB/s of one device, with the library that reached each.

    Only precisions the backend runs on this device are measured (a precision without fast kernels would
    take minutes and tell nothing).
    """
    import torch

    torch.set_num_threads(threads)
    gemm_n = gemm_n or gemm_size(device)
    compute: dict[str, PeakFigure] = {}
    for precision in precisions:
        candidates = []
        try:
            candidates.append(PeakFigure(*_torch_gemm(device, precision, gemm_n), "torch"))
        except (RuntimeError, TypeError) as exc:  # a precision the device has no kernel for
            candidates.append(PeakFigure(0.0, 0.0, f"torch failed: {exc}"[:120]))
        if precision == "fp32" and device == "cpu":
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=threads, user_api="blas"):
                candidates.append(PeakFigure(*_numpy_gemm(gemm_n), "numpy"))
        compute[precision] = max(candidates, key=lambda f: f.value)
    bandwidth = PeakFigure(*_copy_bandwidth(device, copy_mib), "torch copy")
    return {
        "device": device,
        "threads": threads,
        "gemm_n": gemm_n,
        "compute_gflops": {p: asdict(f) for p, f in compute.items()},
        "copy_gbps": asdict(bandwidth),
    }


def compare_with_peak(rows: list[dict], peak_gflops: dict[str, float | None]) -> int:
    """Set each measured row's % of the device's measured peak for the precision that ran.

    A row above 100 % means the reference is wrong (a GEMM slower than the model's kernels, or a FLOP
    count that is too high): it is flagged ``above_peak``, never clipped. Returns how many were above.
    """
    above = 0
    for row in rows:
        peak = peak_gflops.get(row.get("precision_ran") or "")
        if row.get("status") != "ok" or not peak or not row.get("achieved_gflops"):
            continue
        row["pct_of_peak"] = 100.0 * row["achieved_gflops"] / peak
        row["above_peak"] = row["pct_of_peak"] > 100.0
        above += row["above_peak"]
    return above
