"""A measurement killed part-way resumes from its journal: nothing measured is measured again."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.bench.checkpoint import Checkpoint, config_key
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, InferenceScenario
from hwbench_pipeline.bench.trackers.stats import StoppingRule
from hwbench_pipeline.paths import REPO_ROOT

# three processes per configuration, each sampling briefly: each process is its own line in the journal
RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.9, warmup_min_calls=2, warmup_window=2,
                    warmup_max_seconds=0.2, processes=3, max_processes=3)


def configs() -> list[InferenceConfig]:
    return [InferenceConfig("bert", "tiny", "cpu-torch", b, 8, threads=1, rule=RULE) for b in (1, 2)]


MEASURER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_checkpoint import configs
from hwbench_pipeline.bench.checkpoint import Checkpoint
from hwbench_pipeline.bench.dispatch import run_configurations
from hwbench_pipeline.bench.scenarios.inference import InferenceScenario

if __name__ == "__main__":
    run_configurations(InferenceScenario(), configs(), "killed-run", dispatch="process", lock_dir=Path(sys.argv[2]),
                       timeout_s=120, checkpoint=Checkpoint(Path(sys.argv[1]), configs()))
"""


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_run_killed_mid_partition_resumes_without_measuring_anything_twice(tmp_path):
    journal, script = tmp_path / "cpu-torch.jsonl", tmp_path / "measure.py"
    script.write_text(MEASURER)
    proc = subprocess.Popen([sys.executable, str(script), str(journal), str(tmp_path / "locks"),
                             os.path.dirname(__file__)], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        deadline = time.monotonic() + 300
        # rounds measure batch 1, then batch 2, ...: wait until one process of batch 2 is journaled
        while sum("process" in r for r in _journal(journal)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "the measurement never got going"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _journal(journal)
    kept = [r["process"]["worker_pid"] for r in before if "process" in r]

    rows = run_configurations(InferenceScenario(), configs(), "resumed-run", dispatch="process",
                              lock_dir=tmp_path / "locks", timeout_s=120, checkpoint=Checkpoint(journal, configs()))
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert all(r["run_id"] == "resumed-run" and r["processes"] == 3 for r in rows)
    used = [pid for r in rows for pid in r["process_pids"]]
    assert set(kept) <= set(used), "the killed run's processes count towards the resumed rows"
    assert len(used) == len(set(used)) == 6, "no configuration got more processes than its rule asks for"
    assert sum("process" in r for r in _journal(journal)) == 6, "each process was measured once, across both runs"


def test_a_journal_of_another_plan_is_set_aside_and_a_torn_last_line_ignored(tmp_path):
    journal = tmp_path / "cpu-torch.jsonl"
    first = Checkpoint(journal, configs())
    started = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    first.add_process(configs()[0], {"run_id": "a", "p50_ms": 1.5, "started_at": started})
    first.settle(configs()[1], None)
    with open(journal, "a") as fh:
        fh.write('{"config": "torn')
    progress = Checkpoint(journal, configs()).load()
    assert progress[config_key(configs()[0])].processes == [{"run_id": "a", "p50_ms": 1.5, "started_at": started}]
    assert progress[config_key(configs()[1])].settled and progress[config_key(configs()[1])].row is None
    assert Checkpoint(journal, configs()[:1]).load() == {}
    assert not journal.exists() and journal.with_suffix(".other-plan.jsonl").exists()


def test_db_check_reports_a_journal_left_unstored_as_a_note_with_what_it_holds(tmp_path):
    from hwbench_pipeline.bench.checkpoint import JOURNALS_DIR
    from hwbench_pipeline.warehouse.check import check
    from hwbench_pipeline.warehouse.store import Warehouse

    journal = Checkpoint(tmp_path / JOURNALS_DIR / "inference" / "cpu-torch.jsonl", configs())
    journal.add_process(configs()[0], {"run_id": "a", "p50_ms": 1.5})
    journal.add_process(configs()[1], {"run_id": "a", "p50_ms": 2.5})
    journal.settle(configs()[1], {"run_id": "a", "p50_ms": 2.5})
    report = check(Warehouse(tmp_path))
    notes = [f for f in report.findings if f.kind == "unfinished_measurement"]
    assert report.ok and len(notes) == 1 and notes[0].severity == "note"
    assert "1 configuration(s) measured, 0 settled without a row, 1 measuring process(es)" in notes[0].message
    assert "next inference run of cpu-torch" in notes[0].message
