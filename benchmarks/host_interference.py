"""How steady is this host's compute? The same fixed matrix multiply timed on each core alone, then on all
cores at once, with the CPU steal the kernel reported meanwhile.

On a virtual machine whose cores share physical cores with other tenants, a core can run slower for seconds
at a time without any steal showing in /proc/stat; no load sampler inside the guest can see that, and a
multi-threaded measurement slows down with its slowest core. This prints, per phase, the median and the
spread of the per-repetition time and the steal, so a measurement's run-to-run variation can be compared
with the host's own.

    .venv/bin/python benchmarks/host_interference.py [--seconds 10] [--size 512] [--reps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _worker(core: int, seconds: float, size: int, reps: int) -> None:
    import torch

    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"core": core, "ms": times}))


def _steal_ticks() -> int | None:
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    return int(fields[8]) if len(fields) > 8 else None


def _phase(cores: list[int], args: argparse.Namespace) -> tuple[dict[int, list[float]], int | None]:
    steal0 = _steal_ticks()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(c), "--seconds", str(args.seconds),
                               "--size", str(args.size), "--reps", str(args.reps)], stdout=subprocess.PIPE, text=True)
             for c in cores]
    results = {}
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"worker failed with exit code {proc.returncode}")
        row = json.loads(out.strip().splitlines()[-1])
        results[row["core"]] = row["ms"]
    steal1 = _steal_ticks()
    return results, (steal1 - steal0 if steal0 is not None and steal1 is not None else None)


def _describe(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return (f"median {statistics.median(ms):7.1f} ms  p10 {q[0]:7.1f}  p90 {q[-1]:7.1f}  "
            f"max/min {max(ms) / min(ms):4.2f}  n {len(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--size", type=int, default=512, help="square matrix size")
    parser.add_argument("--reps", type=int, default=20, help="multiplies per timed repetition")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args.seconds, args.size, args.reps)
        return

    cores = sorted(os.sched_getaffinity(0))
    print(f"{len(cores)} cores; {args.reps} x fp32 {args.size}x{args.size} multiplies per repetition, one thread")
    solo = {}
    for core in cores:
        results, steal = _phase([core], args)
        solo[core] = statistics.median(results[core])
        print(f"core {core} alone:      {_describe(results[core])}  steal {steal} ticks")
    if len(cores) > 1:
        results, steal = _phase(cores, args)
        for core in cores:
            ms = results[core]
            slow = sum(m > 1.1 * solo[core] for m in ms) / len(ms)
            print(f"core {core} beside the rest: {_describe(ms)}  {statistics.median(ms) / solo[core]:4.2f}x its "
                  f"solo median, {100 * slow:.0f} % of repetitions >10 % slower")
        print(f"steal while all cores ran: {steal} ticks ({os.sysconf('SC_CLK_TCK')} per second)")


if __name__ == "__main__":
    main()
