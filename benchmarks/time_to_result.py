"""Wall time from process start to a stored result row, for one configuration.

Runs ``hwbench bench`` as a fresh process (imports, the measuring process's start, model build, warm-up,
measurement until the ±1 % interval of the median or the cap) and stops the clock when the JSON row is on
disk (the file's modification time); the command's exit comes a little later and is printed too, with where
the time went. Repeats it and prints each time, the median and how each measurement stopped. Target for
bert-base, batch 1, sequence 128, 2 threads: 15 s or less.

    .venv/bin/python benchmarks/time_to_result.py [--model bert --preset base --seq 128 --threads 2 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--seq", default="128")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dispatch", choices=["auto", "process", "ray"], default="auto")
    args = parser.parse_args()

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1, args.repeats + 1):
            out = Path(tmp) / f"row{i}.json"
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "bench", "--model", args.model,
                            "--preset", args.preset, "--batch", args.batch, "--seq", args.seq,
                            "--threads", args.threads, "--ci-target", "0.01", "--dispatch", args.dispatch,
                            "--json", str(out)], check=True, capture_output=True)
            exited = time.time() - t0
            stored = out.stat().st_mtime - t0
            row = json.loads(out.read_text())[0]
            times.append(stored)
            measuring_started = datetime.fromisoformat(row["started_at"]).timestamp() - t0
            measuring_took = (datetime.fromisoformat(row["finished_at"]) -
                              datetime.fromisoformat(row["started_at"])).total_seconds()
            print(f"run {i}: row stored after {stored:5.1f} s (command exited after {exited:5.1f} s); "
                  f"measuring process started at {measuring_started:4.1f} s and took {measuring_took:4.1f} s: "
                  f"load {row.get('load_s', float('nan')):.1f} s, "
                  f"first call {row.get('first_call_ms', 0) / 1e3:.1f} s, "
                  f"{row.get('warmup_calls')} warm-up calls, {row.get('n_samples')} samples, "
                  f"p50 {row.get('p50_ms', float('nan')):.1f} ms, stopped by "
                  f"{row.get('stop_reason', row.get('failure_class'))} "
                  f"(±{100 * (row.get('ci_rel_halfwidth') or float('nan')):.2f} %), "
                  f"busy machine: {row.get('contaminated')}")
    print(f"median time to result: {statistics.median(times):.1f} s over {args.repeats} runs (target ≤ 15 s)")


if __name__ == "__main__":
    main()
