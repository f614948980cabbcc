"""Several files of several tables made visible together, or not at all, whatever kills the writer.

A transaction stages each file under ``<data>/.transactions/<id>/`` (never in a table folder, so no reader
and no maintenance operation sees it), fsyncs it, and commits by writing a ``COMMIT`` list of renames into its
folder: that write is the commit point. The renames into the table folders follow. The next transaction,
write or catalog check of the warehouse recovers what a dead writer left (docs/warehouse.md, "Crash safety"):

* no ``COMMIT``: the transaction never happened; its folder is removed;
* a ``COMMIT``: the renames not yet done are done (rolled forward), then the folder is removed.

A writer holds ``owner.lock`` in its folder for as long as it lives; the kernel drops it when the writer dies,
so a folder whose lock can be taken belongs to nobody and is safe to recover. Renames take the partition
locks of every file (in sorted order, so two transactions cannot deadlock) and the warehouse lock shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pyarrow as pa

from hwbench_pipeline.warehouse.format import PARQUET_WRITE_OPTIONS, WarehouseError
from hwbench_pipeline.warehouse.store import Warehouse, prepared_table
from hwbench_pipeline.warehouse.swap import fsync_dir

TRANSACTIONS_DIR = ".transactions"
COMMIT = "COMMIT"
OWNER_LOCK = "owner.lock"


class Transaction:
    """Files staged for one all-or-nothing write (see the module docstring); use :meth:`Warehouse.transaction`."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self.folder = wh.data_dir / TRANSACTIONS_DIR / f"{os.getpid()}-{secrets.token_hex(6)}"
        self.staged: list[tuple[Path, str, str, Path]] = []  # staged file, table, partition, final path
        self._owner: IO | None = None

    def begin(self) -> None:
        # made under a hidden name and renamed once locked: recovery never sees a folder without its owner's lock
        hidden = self.folder.with_name(f".{self.folder.name}")
        hidden.mkdir(parents=True)
        self._owner = open(hidden / OWNER_LOCK, "a+")  # noqa: SIM115 - held until the end, on purpose
        fcntl.flock(self._owner, fcntl.LOCK_EX)
        os.rename(hidden, self.folder)

    def write(self, table: str, rows: Sequence[dict] | pa.Table, *, run_id: str, partition: str = "all") -> Path:
        """Stage one run's rows of one (table, partition); visible only once the transaction commits."""
        import pyarrow.parquet as pq

        data, final = prepared_table(self.wh, table, rows, run_id=run_id, partition=partition)
        if any(f == final for _, _, _, f in self.staged):
            raise WarehouseError(f"{table}/{partition}/{run_id} is written twice in one transaction")
        staged = self.folder / f"{len(self.staged):04d}.parquet"
        pq.write_table(data, staged, **PARQUET_WRITE_OPTIONS)
        with open(staged, "rb") as fh:
            os.fsync(fh.fileno())
        self.staged.append((staged, table, partition, final))
        return final

    def commit(self) -> None:
        fsync_dir(self.folder)
        commit = [[str(s), str(f)] for s, _, _, f in self.staged]
        tmp = self.folder / f".{COMMIT}.tmp"
        tmp.write_text(json.dumps({"renames": commit}))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / COMMIT)  # the commit point
        fsync_dir(self.folder)
        roll_forward(self.wh, self.folder)
        self._end()

    def abort(self) -> None:
        self._end()

    def _end(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._owner is not None:
            self._owner.close()
            self._owner = None


@contextlib.contextmanager
def transaction(wh: Warehouse) -> Iterator[Transaction]:
    """A transaction that commits when the block ends and leaves nothing when it raises."""
    recover(wh)
    tx = Transaction(wh)
    tx.begin()
    try:
        yield tx
    except BaseException:
        tx.abort()
        raise
    tx.commit()


def roll_forward(wh: Warehouse, folder: Path) -> int:
    """Do the renames of a committed transaction that are not done yet; returns how many were left."""
    renames = [(Path(s), Path(f)) for s, f in json.loads((folder / COMMIT).read_text())["renames"]]
    partitions = sorted({(f.parent.parent.name, f.parent.name) for _, f in renames})
    done = 0
    with contextlib.ExitStack() as locks:
        for table, partition in partitions:
            locks.enter_context(wh.partition_lock(table, partition))
        for staged, final in renames:
            if staged.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                done += 1
        for folder_ in {f.parent for _, f in renames}:
            fsync_dir(folder_)
            wh.after_write(folder_)
    wh.ensure_catalog()
    return done


def _owner_gone(folder: Path) -> IO | None:
    """The folder's owner lock, taken, when its writer is dead; None while the writer lives (or it is gone)."""
    if folder.name.startswith("."):  # still being made; one left by a writer killed then stays empty and harmless
        return None
    try:
        owner = open(folder / OWNER_LOCK, "r+")  # noqa: SIM115 - the caller closes it
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.close()
        return None
    if not folder.exists():  # finished while we waited for the lock
        owner.close()
        return None
    return owner


def dead_transactions(wh: Warehouse) -> list[tuple[Path, bool]]:
    """(folder, committed) of every transaction whose writer is dead."""
    root = wh.data_dir / TRANSACTIONS_DIR
    dead = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if (owner := _owner_gone(folder)) is not None:
            dead.append((folder, (folder / COMMIT).exists()))
            owner.close()
    return dead


def recover(wh: Warehouse) -> list[str]:
    """Finish or undo every transaction whose writer is dead; returns what was done, one line each."""
    root = wh.data_dir / TRANSACTIONS_DIR
    done = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        owner = _owner_gone(folder)
        if owner is None:
            continue
        try:
            if (folder / COMMIT).exists():
                left = roll_forward(wh, folder)
                done.append(f"completed transaction {folder.name} ({left} file(s) put in place)")
            else:
                done.append(f"rolled back transaction {folder.name} (it never committed)")
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            owner.close()
    return done
