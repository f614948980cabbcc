"""A partition's measurement journal: every measuring process's row and every settled configuration, kept on
disk as they come, so that a run killed or failed before it stored anything resumes where it stopped.

One JSON object per line, appended and fsynced: ``{"config": <key>, "process": <row>}`` for a measuring
process of a configuration still unsettled, ``{"config": <key>, "row": <row or null>}`` once it is settled
(null: settled without a row, e.g. skipped). The first line says what the journal is for (``plan``); a journal
written for another plan (another profile, another code version's configurations) is set aside, not reused.
A torn last line (a kill mid-append) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_DATETIME = "$datetime"
#: where partitions' journals live, under the data directory: ``<scenario>/<target>.jsonl``
JOURNALS_DIR = ".checkpoints"


def config_key(cfg: Any) -> str:
    """A configuration's identity in a journal: every field of it, options and stopping rule included."""
    return hashlib.sha256(repr(cfg).encode()).hexdigest()[:20]


def plan_key(configs: list[Any]) -> str:
    return hashlib.sha256("\n".join(config_key(c) for c in configs).encode()).hexdigest()[:20]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _decode(obj: dict) -> Any:
    if obj.keys() == {_DATETIME}:
        return datetime.fromisoformat(obj[_DATETIME])
    return obj


@dataclass
class Progress:
    """What a journal holds for one configuration."""

    processes: list[dict] = field(default_factory=list)
    settled: bool = False
    row: dict | None = None


def _records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line, object_hook=_decode))
        except json.JSONDecodeError:
            break  # a torn append: what follows it was never acknowledged
    return records


@dataclass(frozen=True)
class JournalSummary:
    """What a journal left on disk holds, whatever plan it was written for."""

    path: Path
    measured: int  # configurations settled with a row
    settled: int
    processes: int  # measuring processes of configurations not yet settled


def unfinished_journals(data_dir: Path) -> list[JournalSummary]:
    """The journals of partitions measured but not stored (a run killed or failed before it stored)."""
    root = data_dir / JOURNALS_DIR
    found = []
    for path in sorted(root.glob("*/*.jsonl")) if root.is_dir() else []:
        records = _records(path)[1:]
        rows = {r["config"]: r["row"] for r in records if "row" in r}
        found.append(JournalSummary(path, sum(v is not None for v in rows.values()), len(rows),
                                    sum(1 for r in records if "process" in r and r["config"] not in rows)))
    return found


class Checkpoint:
    def __init__(self, path: Path, configs: list[Any]) -> None:
        self.path = path
        self.plan = plan_key(configs)

    def load(self) -> dict[str, Progress]:
        """The journal's progress per configuration key; empty (and the old journal set aside) when the journal
        was written for another plan."""
        if not self.path.exists():
            return {}
        records = _records(self.path)
        if not records or records[0].get("plan") != self.plan:
            os.replace(self.path, self.path.with_suffix(".other-plan.jsonl"))
            return {}
        progress: dict[str, Progress] = {}
        for record in records[1:]:
            entry = progress.setdefault(record["config"], Progress())
            if "process" in record:
                entry.processes.append(record["process"])
            else:
                entry.settled, entry.row = True, record["row"]
        return progress

    def _append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with open(self.path, "a") as fh:
            if fresh:
                fh.write(json.dumps({"plan": self.plan}) + "\n")
            fh.write(json.dumps(record, default=_encode) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add_process(self, cfg: Any, row: dict) -> None:
        self._append({"config": config_key(cfg), "process": row})

    def settle(self, cfg: Any, row: dict | None) -> None:
        self._append({"config": config_key(cfg), "row": row})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
