"""Putting a folder in place of another in one step, and finishing a swap a crash interrupted.

Where the filesystem can exchange two paths (``renameat2(RENAME_EXCHANGE)``), the swap is one call. Where it
cannot (NFS, SMB, some FUSE), it takes two renames, and between them the live folder exists only under its
``.old`` name. A journal written before the first rename says which folders are involved, so that the next
maintenance operation puts the old folder back instead of removing it as staging debris (docs/warehouse.md,
"Crash safety").
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

#: journals of swaps done with two renames, in the maintenance staging folder
JOURNAL_GLOB = "swap-*.json"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)


class SwapError(OSError):
    pass


def fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_exchange(a: Path, b: Path) -> None:
    """Exchange ``a`` and ``b`` atomically; OSError (EINVAL, ENOSYS, ...) where the filesystem cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass(frozen=True)
class SwapJournal:
    """A swap by two renames in progress: ``live`` moves to ``old``, then ``new`` moves to ``live``."""

    path: Path
    live: Path
    new: Path
    old: Path

    @classmethod
    def read(cls, path: Path) -> SwapJournal:
        record = json.loads(path.read_text())
        return cls(path, Path(record["live"]), Path(record["new"]), Path(record["old"]))

    def write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"live": str(self.live), "new": str(self.new), "old": str(self.old)}))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    @property
    def interrupted(self) -> bool:
        """True while the old contents are not in place and the new ones never got there."""
        return self.old.exists() and self.new.exists()


def swap_directories(new: Path, live: Path, journal_dir: Path) -> Path:
    """Put ``new`` in place of ``live``; returns the path now holding the old contents. ``journal_dir`` (on the
    same filesystem, not inside ``live``) keeps the journal of a two-rename swap until it is done."""
    if not live.exists():
        os.rename(new, live)
        fsync_dir(live.parent)
        return new
    try:
        rename_exchange(new, live)
        old = new
    except OSError as exc:
        if exc.errno not in _NO_EXCHANGE:
            raise SwapError(exc.errno, f"cannot swap {new} into {live}: {exc.strerror}") from exc
        old = new.with_name(new.name + ".old")
        journal = SwapJournal(journal_dir / f"swap-{os.getpid()}-{secrets.token_hex(4)}.json", live, new, old)
        journal.write()
        os.rename(live, old)
        fsync_dir(old.parent)
        try:
            os.rename(new, live)
        except OSError:
            os.rename(old, live)
            raise
        fsync_dir(live.parent)
        journal.path.unlink()
        return old
    fsync_dir(live.parent)
    fsync_dir(old.parent)
    return old


def _move_back(old: Path, live: Path) -> int:
    """Move what ``old`` holds into ``live``, keeping what a writer put in ``live`` since (it is newer)."""
    if not live.exists():
        os.rename(old, live)
        fsync_dir(live.parent)
        return 1
    moved = 0
    if old.is_dir() and live.is_dir():
        for entry in sorted(old.iterdir()):
            moved += _move_back(entry, live / entry.name)
        fsync_dir(live)
    return moved


def recover_interrupted_swaps(journal_dir: Path) -> list[SwapJournal]:
    """Put back the old contents of every swap that stopped between its two renames; returns those swaps.
    A journal of a swap that finished (its ``new`` folder is gone) or never started is just removed."""
    recovered = []
    for path in sorted(journal_dir.glob(JOURNAL_GLOB)) if journal_dir.is_dir() else []:
        journal = SwapJournal.read(path)
        if journal.interrupted:
            _move_back(journal.old, journal.live)
            shutil.rmtree(journal.old, ignore_errors=True)
            recovered.append(journal)
        path.unlink()
    if recovered:
        fsync_dir(journal_dir)
    return recovered


def interrupted_swaps(journal_dir: Path) -> list[SwapJournal]:
    """Swaps that a crash stopped between their renames (nothing is changed)."""
    journals = [SwapJournal.read(p) for p in sorted(journal_dir.glob(JOURNAL_GLOB))] if journal_dir.is_dir() else []
    return [j for j in journals if j.interrupted]
