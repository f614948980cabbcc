"""Kill -9 at random moments of the warehouse's writers, then check what is visible once it is opened again.

Faults, each run ``--trials`` times on a fresh copy of a small warehouse (real fixture rows):

* ``store``      a measurement run stored in four tables (one transaction), the writer killed at a random moment
* ``import``     ``hwbench db import`` of an hwbench JSON file (results, samples, failures, runs), killed
* ``compact``    ``hwbench db compact`` with the atomic exchange disabled (the two-rename path of NFS/SMB)
* ``restore``    ``hwbench db restore`` of a backup, the same two-rename path
* ``pipeline``   ``hwbench run --profile smoke`` on cpu-torch, killed at a random moment, then run again
                 (slow, several minutes a trial: ``--pipeline-trials``)

The moment is drawn uniformly over the operation's own duration, measured once beforehand without a kill.
After each kill the warehouse is opened as the next writer opens it (``Warehouse.recover``, or the next
maintenance command), and counted against what was committed before: rows lost (committed rows no longer
visible), rows duplicated (a run's row visible twice), partial runs visible (a run or import visible in only
some of its tables). All three must be 0. Recovery time is the time of that opening; "next ok" says whether
the same operation then completes.

    .venv/bin/python benchmarks/faults.py [--trials 20] [--pipeline-trials 3] [--faults store,import,...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwbench_pipeline.warehouse import maintenance  # noqa: E402
from hwbench_pipeline.warehouse.store import Warehouse  # noqa: E402

PYTHON = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
FIXTURE = REPO / "tests" / "predict" / "fixtures"
RUN_TABLES = ("inference_results", "latency_samples", "failures", "runs")

STORE_WRITER = """
import sys
from hwbench_pipeline.warehouse.store import Warehouse
sys.path.insert(0, sys.argv[2])
from faults import run_rows
wh = Warehouse(sys.argv[1])
with wh.transaction() as tx:
    for table, rows in run_rows("stored").items():
        tx.write(table, rows, run_id="stored", partition="cpu-torch")
"""

NO_EXCHANGE = """
import errno, sys
from hwbench_pipeline.warehouse import swap
from hwbench_pipeline.cli import main

def no_exchange(a, b):
    raise OSError(errno.EINVAL, "exchange not supported")

swap.rename_exchange = no_exchange
sys.exit(main(sys.argv[1:]))
"""


def run_rows(run_id: str, n: int = 200) -> dict[str, list[dict]]:
    """A run's rows in four tables, shaped as a measurement stage stores them (many, so a write takes a while)."""
    key = {"run_id": run_id, "target": "cpu-torch", "family": "bert", "preset": "tiny", "seq_len": 16,
           "precision": "fp32", "threads": 1}
    return {
        "inference_results": [{**key, "batch_size": b, "status": "ok", "p50_ms": 1.0 + b / 7, "p90_ms": 1.1 + b / 7,
                               "p99_ms": 1.2 + b / 7, "samples_ms": [1.0 + b / 7] * 50} for b in range(1, n + 1)],
        "latency_samples": [{**key, "batch_size": b, "scenario": "inference", "sample_index": i,
                             "latency_ms": 1.0 + b / 7 + i / 1000} for b in range(1, n + 1) for i in range(50)],
        "failures": [{**key, "batch_size": 10_000, "status": "failed", "failure_class": "timeout", "message": "x"}],
        "runs": [{"run_id": run_id, "target": "cpu-torch", "scenario": "inference", "n_configs": n + 1, "n_ok": n,
                  "n_failed": 1, "status": "ok"}],
    }


def snapshot(data_dir: Path) -> dict[str, list[tuple]]:
    """Every visible row of every table that has files, as (run_id, table key columns...) tuples."""
    from hwbench_pipeline.warehouse.schema import TABLE_KEYS, TABLES

    wh = Warehouse(data_dir)
    out = {}
    for table in TABLES:
        if wh.files(table):
            frame = wh.read(table)
            columns = [c for c in ["run_id", *TABLE_KEYS.get(table, []), "_partition"] if c in frame.columns]
            out[table] = sorted(frame.select(list(dict.fromkeys(columns))).rows(), key=repr)
    return out


@dataclass
class Outcome:
    lost: int = 0
    duplicated: int = 0
    partial: int = 0
    recovery_s: float = 0.0
    next_ok: bool = True


def compare(before: dict, after: dict, new_runs: set[str], tables_of_new: tuple[str, ...]) -> Outcome:
    """Count committed rows gone, rows seen twice, and new runs visible in only some of their tables."""
    out = Outcome()
    for table, rows in before.items():
        visible = after.get(table, [])
        out.lost += sum(1 for row in set(rows) if row not in set(visible))
    for rows in after.values():
        out.duplicated += len(rows) - len(set(rows))
    for run in new_runs:
        present = {t for t in tables_of_new if any(r[0] == run for r in after.get(t, []))}
        out.partial += bool(present) and present != set(tables_of_new)
    return out


@dataclass
class Fault:
    name: str
    setup: Callable[[Path], None]  # builds the warehouse the operation starts from
    command: Callable[[Path], list[str]]
    check: Callable[[Path, dict], Outcome]  # counts, after the kill and the recovery
    durations: list[float] = field(default_factory=list)


def seeded(data_dir: Path) -> None:
    """The predictor fixture's real measurements, plus many small runs so that compaction has work to do."""
    import polars as pl

    sys.path.insert(0, str(REPO / "tests" / "predict"))
    from fixture_data import seed_warehouse

    seed_warehouse(data_dir, pl.read_parquet(FIXTURE / "measurements.parquet"),
                   pl.read_parquet(FIXTURE / "hardware_targets.parquet"))
    wh = Warehouse(data_dir)
    for i in range(24):
        wh.write("inference_results", run_rows(f"old{i}", 5)["inference_results"], run_id=f"old{i}",
                 partition="cpu-torch")


def recover_by_opening(data_dir: Path) -> float:
    t0 = time.perf_counter()
    Warehouse(data_dir).recover()
    Warehouse(data_dir).ensure_catalog()
    return time.perf_counter() - t0


def recover_by_maintenance(data_dir: Path) -> float:
    t0 = time.perf_counter()
    maintenance.check(Warehouse(data_dir))  # reads only; the next maintenance command recovers
    maintenance.retain(Warehouse(data_dir), keep_runs=10_000)  # changes nothing but recovers first
    return time.perf_counter() - t0


def check_store(data_dir: Path, before: dict) -> Outcome:
    seconds = recover_by_opening(data_dir)
    out = compare(before, snapshot(data_dir), {"stored"}, RUN_TABLES)
    out.recovery_s = seconds
    return out


def check_pipeline(data_dir: Path, before: dict) -> Outcome:
    """Every run visible in a results, samples or failures table has its runs row (written in the same
    transaction); a killed partition leaves a journal the next run resumes from, not a partial run."""
    seconds = recover_by_opening(data_dir) if data_dir.exists() else 0.0
    after = snapshot(data_dir) if data_dir.exists() else {}
    with_runs_row = {r[0] for r in after.get("runs", [])}
    out = compare(before, after, set(), ())
    out.partial = len({r[0] for t in RUN_TABLES[:3] for r in after.get(t, [])} - with_runs_row)
    out.recovery_s = seconds
    return out


#: a real optimum-benchmark report (tests/warehouse/fixtures: its README says how it was produced)
IMPORTED = REPO / "tests" / "warehouse" / "fixtures" / "optimum_benchmark" / "tiny_bert_cpu_pytorch" / "benchmark.json"


def check_import(data_dir: Path, before: dict) -> Outcome:
    seconds = recover_by_opening(data_dir)
    after = snapshot(data_dir)
    imported = {r[0] for t in ("inference_results", "latency_samples", "runs") for r in after.get(t, [])
                if str(r[0]).startswith("import-")}
    out = compare(before, after, imported, ("inference_results", "latency_samples", "runs"))
    out.recovery_s = seconds
    return out


def check_maintenance(data_dir: Path, before: dict) -> Outcome:
    seconds = recover_by_maintenance(data_dir)
    out = compare(before, snapshot(data_dir), set(), ())
    out.recovery_s = seconds
    return out


def check_restore(data_dir: Path, before: dict) -> Outcome:
    """A restore replaces the warehouse: after the kill, either the old one or the backup, whole."""
    seconds = recover_by_maintenance(data_dir)
    after = snapshot(data_dir)
    backup = json.loads((data_dir.parent / "backup-snapshot.json").read_text())
    backup = {t: sorted((tuple(r) for r in rows), key=repr) for t, rows in backup.items()}
    whole = after in (before, backup)
    out = compare(before if after != backup else backup, after, set(), ())
    out.partial = 0 if whole else 1
    out.recovery_s = seconds
    return out


def make_faults(workdir: Path) -> dict[str, Fault]:
    cli = [PYTHON, "-m", "hwbench_pipeline.cli"]

    def restore_setup(data_dir: Path) -> None:
        seeded(data_dir)
        backup = data_dir.parent / "backup"
        maintenance.backup(Warehouse(data_dir), backup)
        (data_dir.parent / "backup-snapshot.json").write_text(json.dumps(snapshot(data_dir), default=str))
        Warehouse(data_dir).write("inference_results", run_rows("after-backup", 5)["inference_results"],
                                  run_id="after-backup", partition="cpu-torch")

    return {
        "store": Fault("store", seeded, lambda d: [PYTHON, "-c", STORE_WRITER, str(d), str(REPO / "benchmarks")],
                       check_store),
        "import": Fault("import", seeded, lambda d: [*cli, "db", "import", str(IMPORTED),
                                                     "--data-dir", str(d)], check_import),
        "compact": Fault("compact", seeded, lambda d: [PYTHON, "-c", NO_EXCHANGE, "db", "compact", "--data-dir", str(d),
                                                       "--small-mb", "64"], check_maintenance),
        "restore": Fault("restore", restore_setup,
                         lambda d: [PYTHON, "-c", NO_EXCHANGE, "db", "restore", str(d.parent / "backup"),
                                    "--data-dir", str(d)], check_restore),
        "pipeline": Fault("pipeline", lambda d: None,
                          lambda d: [*cli, "run", "--profile", "smoke", "--targets", "cpu-torch"], check_pipeline),
    }


def trial_env(trial_dir: Path) -> dict[str, str]:
    """The trial's own data directory and Dagster instance (with the project's instance settings)."""
    home = trial_dir / "dagster_home"
    if not home.exists():
        home.mkdir(parents=True)
        shutil.copy(REPO / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return {**ENV, "HWBENCH_DATA_DIR": str(trial_dir / "data"), "DAGSTER_HOME": str(home),
            "HWBENCH_LOCK_DIR": str(trial_dir / "locks")}


def run_once(fault: Fault, trial_dir: Path, kill_after: float | None) -> tuple[float, int]:
    data_dir = trial_dir / "data"
    proc = subprocess.Popen(fault.command(data_dir), env=trial_env(trial_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.perf_counter()
    if kill_after is None:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"{fault.name} failed without a kill: {err.decode()[-800:]}")
    else:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the writer and anything it started
            proc.wait()
    return time.perf_counter() - t0, proc.returncode


def trial(fault: Fault, workdir: Path, index: int, rng: random.Random, template: Path) -> tuple[Outcome, float, bool]:
    trial_dir = workdir / f"{fault.name}-{index}"
    shutil.copytree(template, trial_dir, symlinks=True)
    data_dir = trial_dir / "data"
    before = snapshot(data_dir) if data_dir.exists() else {}
    moment = rng.uniform(0.0, statistics.median(fault.durations))
    _, code = run_once(fault, trial_dir, moment)
    out = fault.check(data_dir, before)
    killed = code == -signal.SIGKILL
    # the same operation again, from where the kill left it, must complete
    out.next_ok = subprocess.run(fault.command(data_dir), env=trial_env(trial_dir), capture_output=True,
                                 timeout=3600).returncode == 0
    if fault.name == "pipeline" and out.next_ok:  # and then the warehouse holds every run whole
        out.partial += check_pipeline(data_dir, before).partial
    shutil.rmtree(trial_dir, ignore_errors=True)
    return out, moment, killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pipeline-trials", type=int, default=2)
    parser.add_argument("--faults", default="store,import,compact,restore,pipeline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="hwbench-faults-") as tmp:
        workdir = Path(tmp)
        faults = make_faults(workdir)
        print(f"{'fault':<10} {'trials':>6} {'killed':>6} {'lost':>5} {'dup':>5} {'partial':>7} "
              f"{'recovery p50/max s':>19} {'next ok':>8} {'op s':>6}")
        for name in args.faults.split(","):
            fault = faults[name]
            template = workdir / f"{name}-template"
            (template / "data").mkdir(parents=True)
            fault.setup(template / "data")
            for _ in range(1 if name == "pipeline" else 2):  # its duration without a kill, on a throwaway copy
                probe = workdir / f"{name}-probe"
                shutil.copytree(template, probe, symlinks=True)
                fault.durations.append(run_once(fault, probe, None)[0])
                shutil.rmtree(probe)
            trials = args.pipeline_trials if name == "pipeline" else args.trials
            results = [trial(fault, workdir, i, rng, template) for i in range(trials)]
            outs = [o for o, _, _ in results]
            recovery = [o.recovery_s for o in outs]
            print(f"{name:<10} {trials:>6} {sum(k for _, _, k in results):>6} {sum(o.lost for o in outs):>5} "
                  f"{sum(o.duplicated for o in outs):>5} {sum(o.partial for o in outs):>7} "
                  f"{statistics.median(recovery):>10.3f}/{max(recovery):<8.3f} "
                  f"{sum(o.next_ok for o in outs):>4}/{trials:<3} {statistics.median(fault.durations):>6.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
