"""The host-wide measurement lock, and its second half: measuring processes hold it until they are gone.

Whoever measures on this host (a CLI run, a Dagster step) holds ``measure.lock`` exclusively. A measuring
process is not always a child of that holder (it is forked from a fork server that a Ray worker or the CLI
started), so it can outlive a holder killed with SIGKILL for a moment or, behind a Ray worker, for up to
the worker's grace period. Each measuring process therefore holds ``measuring.lock`` shared for its whole
life, and a new holder of ``measure.lock`` waits until it can take ``measuring.lock`` exclusively: no run
starts beside an orphan of a killed one. The kernel drops both locks when their holders die.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

#: set, while the lock is held, to the path every measuring process of the holder holds shared
MEASURING_LOCK_ENV = "HWBENCH_MEASURING_LOCK"
_held: list[object] = []  # the measuring lock's file, kept open for this process's life


@contextlib.contextmanager
def host_measurement_lock(lock_dir: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the host-wide measurement lock; waits (saying so) while another hwbench process measures, or while
    a measuring process of a run that was killed is still running."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / "measure.lock"
    with open(path, "a+") as fh:
        _lock_exclusively(fh, f"another hwbench process is measuring on this host; waiting for {path}", log)
        measuring = lock_dir / "measuring.lock"
        with open(measuring, "a+") as measuring_fh:  # taken and given back: only the wait matters
            _lock_exclusively(measuring_fh, "a measuring process of an earlier hwbench run is still running; "
                                            f"waiting for it to end ({measuring})", log)
            fcntl.flock(measuring_fh, fcntl.LOCK_UN)
        previous = os.environ.get(MEASURING_LOCK_ENV)
        os.environ[MEASURING_LOCK_ENV] = str(measuring)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(MEASURING_LOCK_ENV, None)
            else:
                os.environ[MEASURING_LOCK_ENV] = previous
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_exclusively(fh: IO, waiting: str, log: Callable[[str], None]) -> None:
    """Take ``fh``'s lock exclusively, saying ``waiting`` first when someone else holds it."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(waiting)
        fcntl.flock(fh, fcntl.LOCK_EX)


def measuring_lock_env() -> dict[str, str]:
    """What a measuring process started now needs in its environment to hold the lock (empty if none is held)."""
    path = os.environ.get(MEASURING_LOCK_ENV)
    return {MEASURING_LOCK_ENV: path} if path else {}


def hold_measuring_lock() -> None:
    """In a measuring process: hold the measuring lock shared until this process ends (where one is held)."""
    path = os.environ.get(MEASURING_LOCK_ENV)
    if not path:
        return
    fh = open(path, "a+")  # noqa: SIM115 - stays open for the life of the process, on purpose
    fcntl.flock(fh, fcntl.LOCK_SH)
    _held.append(fh)
