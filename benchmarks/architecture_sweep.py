"""Coverage of every architecture of the installed transformers: which ones run a real forward pass where.

    .venv/bin/python benchmarks/architecture_sweep.py                              # every architecture, cpu-torch
    .venv/bin/python benchmarks/architecture_sweep.py --targets cpu-torch,cpu-onnxruntime,cpu-openvino
    .venv/bin/python benchmarks/architecture_sweep.py --sample                     # the fixed CI sample
    .venv/bin/python benchmarks/architecture_sweep.py --random 150 --targets cpu-onnxruntime   # a seeded sample
    .venv/bin/python benchmarks/architecture_sweep.py --report-only                # figures of the journal

Each probe (tiny preset, batch 1, sequence 16, 1 thread) runs in a fresh process. Rows go to a JSON-lines journal
(default data/sweeps/architectures.jsonl): a killed sweep resumes where it stopped, and a probe is run again only
when transformers' version or the probe method changed. Prints coverage per category and target with the
denominator, the wall time per target, and the most frequent failure classes and messages.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwbench_pipeline.bench.catalog.probe import ProbeConfig  # noqa: E402
from hwbench_pipeline.bench.catalog.registry import CATEGORIES, architectures  # noqa: E402
from hwbench_pipeline.bench.catalog.sample import CI_SAMPLE  # noqa: E402
from hwbench_pipeline.bench.catalog.sweep import coverage_table, read_journal, run_sweep  # noqa: E402


def print_coverage(rows: list[dict], targets: list[str], denominator: int) -> None:
    newest = {(r["model_type"], r["preset"], r["target"]): r for r in rows if r["target"] in targets}
    rows = list(newest.values())  # a probe run again (its config changed) counts once, as it ran last
    table = coverage_table(rows)
    print(f"\ncoverage (ok / probed) per category; {denominator} architectures in the registry; +Nt: N more ran "
          "their text tower only")
    print(f"{'category':18}" + "".join(f"{t:>24}" for t in targets))
    totals = {t: Counter() for t in targets}
    for category in CATEGORIES:
        cells = []
        for target in targets:
            counts = table.get((category, target), Counter())
            totals[target].update(counts)
            n, partial = sum(counts.values()), counts["ok (text tower only)"]
            cells.append((f"{counts['ok']}/{n} ({counts['ok'] / n:.0%})" + (f" +{partial}t" if partial else ""))
                         if n else "-")
        if any(cell != "-" for cell in cells):
            print(f"{category:18}" + "".join(f"{c:>24}" for c in cells))
    print(f"{'all':18}" + "".join(
        f"{totals[t]['ok']}/{sum(totals[t].values())} ({totals[t]['ok'] / max(1, sum(totals[t].values())):.1%})"
        .rjust(24) for t in targets))
    for target in targets:
        mine = [r for r in rows if r["target"] == target]
        wall = sum(r.get("wall_s") or 0 for r in mine)
        failures = Counter(r["failure_class"] for r in mine if r["status"] != "ok")
        print(f"\n{target}: {len(mine)} probes, {wall / 60:.1f} min of probe wall time; failures: {dict(failures)}")
        messages = Counter((r["failure_class"], " ".join(str(r["message"]).split())[:110])
                           for r in mine if r["status"] != "ok")
        for (failure, message), count in messages.most_common(12):
            print(f"  {count:3}  {failure}: {message}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="cpu-torch")
    parser.add_argument("--journal", default=str(REPO / "data" / "sweeps" / "architectures.jsonl"))
    parser.add_argument("--sample", action="store_true", help="only the fixed CI sample of architectures")
    parser.add_argument("--only", help="comma-separated model types")
    parser.add_argument("--random", type=int, metavar="N",
                        help="a random sample of N architectures (seeded, so the same N and seed give the same sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per probe")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    registry = architectures()
    types = args.only.split(",") if args.only else list(CI_SAMPLE) if args.sample else list(registry)
    if args.random:
        types = sorted(random.Random(args.seed).sample(types, min(args.random, len(types))))
    journal = Path(args.journal)
    if not args.report_only:
        t0 = time.monotonic()
        # architecture-major: a sweep cut short has covered every target for the same architectures
        configs = [ProbeConfig(model_type, target=target) for model_type in types for target in targets]
        run_sweep(configs, journal, f"sweep-{time.strftime('%Y%m%dT%H%M%S')}", timeout_s=args.timeout)
        print(f"sweep wall time {(time.monotonic() - t0) / 60:.1f} min")
    rows = [r for r in read_journal(journal) if r["model_type"] in set(types)]
    print_coverage(rows, targets, len(registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
