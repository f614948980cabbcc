"""Measured peaks of a target: the roofline every result row is compared against.

* Compute: dense matrix multiply (n × n × n, 2n³ FLOPs) per precision, in every library at hand (torch, and
  numpy's BLAS for fp32 on the CPU); the best median wins, because one library's GEMM can sit well below
  what the silicon does.
* int8: the same multiply with int8 operands and int32 accumulation (2n³ integer ops, "GOPS"), in the int8
  GEMM of the runtime the target runs (torch ``_int_mm``, onnxruntime ``MatMulInteger``, an OpenVINO
  FullyConnected the CPU plugin runs in u8/i8): each runtime has its own int8 kernels, far apart from each
  other, so an int8 row is compared with what its own runtime reaches.
* Memory: a stream-style copy of a buffer much larger than the caches; bytes moved = read + write.

Each figure is the best of several timed repetitions after warm-up (a peak is a ceiling, so the best run is
the estimate, not the median; the spread is recorded). Runs in the measuring worker (see dispatch), so it
owns the cores like any measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hwbench_pipeline.bench.precision import parse_spec

GEMM_N_START = 512
GEMM_MIN_SECONDS = 0.05  # grow n until one multiply takes this long, so call overhead is negligible
COPY_MIB = 256
REPEATS = 5
#: backends whose own int8 GEMM gives their targets' int8 peak on the CPU; any other backend, or these on an
#: accelerator (onnxruntime's and OpenVINO's int8 peaks are measured on the CPU only), gets torch's _int_mm
CPU_INT8_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
#: OpenVINO runtime-model layers that do a GEMM, and the precisions that mean it ran on int8 operands
OV_GEMM_LAYERS: tuple[str, ...] = ("FullyConnected", "MatMul")
OV_INT8_TYPES: tuple[str, ...] = ("u8", "i8")


@dataclass
class PeakFigure:
    value: float  # GFLOP/s (int8: GOPS) or GB/s
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


def _torch_int8_gemm(device: str, n: int) -> tuple[float, float, str]:
    import torch

    # int8 × int8 -> int32. On CUDA _int_mm wants m > 16 and k, n multiples of 8 (the power-of-two sizes
    # from GEMM_N_START are); torch 2.13's CPU kernel takes any shape.
    a = torch.randint(-128, 128, (n, n), device=device, dtype=torch.int8)
    b = torch.randint(-128, 128, (n, n), device=device, dtype=torch.int8)
    out = torch.empty(n, n, device=device, dtype=torch.int32)
    best, spread = _best_time(lambda: torch._int_mm(a, b, out=out), lambda: _sync(device))
    return 2 * n**3 / best / 1e9, spread, "torch _int_mm"


def _onnxruntime_int8_gemm(n: int, threads: int) -> tuple[float, float, str]:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from hwbench_pipeline.bench.backends.onnxruntime.config import INTER_OP_THREADS

    # uint8 activations × int8 weights, as onnxruntime's dynamic quantization emits them (the u8s8 kernel is
    # its fast one on x86: s8s8 measured 10x slower here); the weights are an initializer, prepacked like a
    # quantized model's
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    out = np.empty((n, n), dtype=np.int32)
    # bound input and output buffers: the timed call is the multiply, not an allocation of its output
    binding = session.io_binding()
    binding.bind_cpu_input("a", a)
    binding.bind_output("y", "cpu", 0, np.int32, [n, n], out.ctypes.data)
    best, spread = _best_time(lambda: session.run_with_iobinding(binding), lambda: None)
    return 2 * n**3 / best / 1e9, spread, "onnxruntime MatMulInteger u8s8"


def _openvino_int8_gemm(n: int, threads: int) -> tuple[float, float, str]:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from hwbench_pipeline.bench.backends.openvino.config import COMPILE_PROPERTIES, OV_PRECISIONS

    # OpenVINO has no int8 matmul op: a quantized model says it with a FakeQuantize on the activations and
    # int8 weight constants dequantized by Convert × scale; the CPU plugin's low-precision transformations
    # fold both into one FullyConnected on u8 × i8 operands (checked below on the runtime model)
    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    low, high = ops.constant(np.float32(-1.0)), ops.constant(np.float32(1.0))
    quantized = ops.fake_quantize(x, low, high, low, high, 256)
    weights = ops.constant(rng.integers(-127, 128, (n, n), dtype=np.int8))
    dequantized = ops.multiply(ops.convert(weights, ov.Type.f32), ops.constant(np.float32(1 / 127)))
    model = ov.Model([ops.matmul(quantized, dequantized, False, True)], [x], "int8_gemm")
    compiled = ov.Core().compile_model(model, "CPU", {
        **COMPILE_PROPERTIES, "INFERENCE_PRECISION_HINT": OV_PRECISIONS["fp32"], "INFERENCE_NUM_THREADS": threads})
    layers = [_ov_layer(op) for op in compiled.get_runtime_model().get_ordered_ops()]
    gemms = [layer for layer in layers if layer["layerType"] in OV_GEMM_LAYERS]
    got = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    if got != threads:  # the plugin caps the count at the CPUs it sees; the peak must not claim more
        raise RuntimeError(f"openvino runs {got} threads here, not the {threads} asked for")
    if not gemms or any(g["runtimePrecision"] not in OV_INT8_TYPES for g in gemms):
        raise RuntimeError(f"the OpenVINO CPU plugin did not run the int8 matmul on int8 operands: {gemms}")
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(rng.uniform(-1, 1, (n, n)).astype(np.float32)))
    best, spread = _best_time(request.infer, lambda: None)
    layer = gemms[0]
    return 2 * n**3 / best / 1e9, spread, f"openvino {layer['layerType']} {layer['runtimePrecision']} " \
                                          f"({layer['primitiveType']})"


def _ov_layer(op: Any) -> dict[str, str]:
    """What the CPU plugin made of one op: layer type, the precision it ran in, its kernel."""
    info = op.get_rt_info()
    return {key: info[key].astype(str) if key in info else ""
            for key in ("layerType", "runtimePrecision", "primitiveType")}


def int8_gemm(device: str, backend: str, n: int, threads: int) -> PeakFigure:
    """The int8 GEMM peak (GOPS) of ``backend``'s own runtime on ``device``; ``library`` names the runtime and
    kernel, or why it failed (value 0: a runtime without int8 kernels here has no int8 peak)."""
    runtime = backend if device == "cpu" and backend in CPU_INT8_RUNTIMES else "torch"
    try:
        if runtime == "onnxruntime":
            return PeakFigure(*_onnxruntime_int8_gemm(n, threads))
        if runtime == "openvino":
            return PeakFigure(*_openvino_int8_gemm(n, threads))
        return PeakFigure(*_torch_int8_gemm(device, n))
    except Exception as exc:  # noqa: BLE001 - no int8 kernel here (onnxruntime's errors are plain Exceptions)
        return PeakFigure(0.0, 0.0, f"{runtime} failed: {exc}"[:120])


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


def measure_peaks(device: str, precisions: tuple[str, ...], threads: int, *, backend: str = "torch",
                  gemm_n: int | None = None, copy_mib: int = COPY_MIB) -> dict:
    """Peak GFLOP/s per number format and copy GB/s of one device, with the library that reached each.

    ``precisions`` are specs (bench/precision.py): int8-dynamic and int8-static are one number format, int8,
    measured once. Only precisions the backend runs on this device are measured (a precision without fast
    kernels would take minutes and tell nothing). ``backend`` (the target's runtime) chooses only the int8
    GEMM: the float formats keep the best library's figure, int8 is its runtime's own (int8_gemm). A caller
    that knows the device's GEMM size and bandwidth already (another runtime's int8 on the same device) passes
    ``gemm_n`` and ``copy_mib=0``: the copy is then not measured again (``copy_gbps`` None).
    """
    import torch

    torch.set_num_threads(threads)
    gemm_n = gemm_n or gemm_size(device)
    compute: dict[str, PeakFigure] = {}
    for precision in dict.fromkeys(parse_spec(spec)[0] for spec in precisions):
        if precision == "int8":
            compute[precision] = int8_gemm(device, backend, gemm_n, threads)
            continue
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
    bandwidth = PeakFigure(*_copy_bandwidth(device, copy_mib), "torch copy") if copy_mib else None
    return {
        "device": device,
        "threads": threads,
        "backend": backend,
        "gemm_n": gemm_n,
        "compute_gflops": {p: asdict(f) for p, f in compute.items()},
        "copy_gbps": asdict(bandwidth) if bandwidth else None,
    }


def compare_with_peak(rows: list[dict], peak_gflops: dict[str, float | None]) -> int:
    """Set each measured row's % of the device's measured peak for the precision that ran.

    An int8 row (GOPS) is compared with the int8 peak, its runtime's int8 GEMM (measure_peaks' ``backend``).
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
