"""What every maintenance operation (compaction, retention, backup, restore, check) shares: its error, progress
callbacks, the one-at-a-time session that recovers first, and staging folders under ``<data>/.maintenance/``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from hwbench_pipeline.warehouse.format import MaintenanceError
from hwbench_pipeline.warehouse.schema import TABLES
from hwbench_pipeline.warehouse.store import Warehouse
from hwbench_pipeline.warehouse.swap import SwapError, recover_interrupted_swaps, swap_directories

STAGING_DIR = ".maintenance"

#: progress callback: (what is being done, items done, items in all)
Progress = Callable[[str, int, int], None]


def no_progress(what: str, done: int, total: int) -> None:
    return None


def refuse_unknown_tables(tables: list[str] | None) -> None:
    unknown = sorted(set(tables or []) - set(TABLES))
    if unknown:
        raise MaintenanceError(f"unknown table {', '.join(unknown)}; tables: {', '.join(TABLES)}")


def swap_folder(wh: Warehouse, new: Path, live: Path) -> Path:
    """Put ``new`` in place of ``live`` in one step (``warehouse/swap.py``); returns where the old folder went."""
    try:
        return swap_directories(new, live, wh.data_dir / STAGING_DIR)
    except SwapError as exc:
        raise MaintenanceError(exc.strerror) from exc


@contextlib.contextmanager
def staging_folder(wh: Warehouse, kind: str) -> Iterator[Path]:
    """A fresh staging folder under <data>/.maintenance, removed afterwards whatever happens."""
    root = wh.data_dir / STAGING_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{kind}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def maintenance_session(wh: Warehouse) -> Iterator[None]:
    """One maintenance operation at a time; staging left by a crashed one is removed first."""
    with wh.named_lock("maintenance.lock", exclusive=True):
        root = wh.data_dir / STAGING_DIR
        recover_interrupted_swaps(root)  # before the cleanup below: an interrupted swap's old folder is live data
        wh.recover()  # a dead writer's committed files go in place before anything is merged or removed
        if root.is_dir():
            for leftover in root.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink()
        yield
