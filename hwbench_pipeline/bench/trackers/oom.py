"""Out-of-memory kills as the kernel records them, and memory cgroups that put a limit on one process.

A process killed with SIGKILL does not say why. The kernel counts every kill of its out-of-memory killer:
``oom_kill`` in ``/proc/vmstat`` (the whole host, since Linux 4.13), in a cgroup v2 ``memory.events`` and in a
cgroup v1 ``memory.oom_control``. A SIGKILL while one of these rose is read as an out-of-memory kill. The
host-wide counter can also rise for another process killed at the same moment; a counter of the measuring
process's own cgroup cannot, so a limit set through a cgroup gives an unambiguous answer.

Where this process may create a memory cgroup (root, or a delegated cgroup v2 subtree), a measuring process
runs in one of its own with the user's limit, and the kernel enforces it. Elsewhere the launcher polls the
process's RSS instead (bench/launchers/process.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _counter(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup folder: v2 (``0::/path``) when ``controller`` is empty, else v1's ``controller``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (not controller and controllers == "") or controller in controllers.split(","):
            base = CGROUP_ROOT if not controller else CGROUP_ROOT / controller
            folder = base / path.lstrip("/")
            if folder.is_dir():
                return folder
    return None


def oom_kill_counts() -> dict[str, int]:
    """Every out-of-memory kill counter this process can read: the host's and its own cgroup's (file -> count)."""
    places = [Path("/proc/vmstat")]
    if (v2 := _own_cgroup("")) is not None:
        places.append(v2 / "memory.events")
    if (v1 := _own_cgroup("memory")) is not None:
        places.append(v1 / "memory.oom_control")
    return {str(path): value for path in places if (value := _counter(path, "oom_kill")) is not None}


def oom_kills_since(before: dict[str, int]) -> str | None:
    """Which counters rose since ``before`` (a description), or None when none did."""
    after = oom_kill_counts()
    rose = [f"oom_kill in {path} rose from {before[path]} to {count}" for path, count in after.items()
            if path in before and count > before[path]]
    return "; ".join(rose) or None


#: how long removing a cgroup waits for the last process in it to be gone
REMOVE_WAIT_S = 5.0


@dataclass
class MemoryCgroup:
    """A memory cgroup of this host holding one process, with a limit the kernel enforces."""

    path: Path
    limit_mb: float

    @classmethod
    def create(cls, limit_mb: float) -> MemoryCgroup | None:
        """A new cgroup under this process's own, or None where cgroups cannot be created here."""
        name = f"hwbench-{os.getpid()}-{secrets.token_hex(4)}"
        limit = str(int(limit_mb * 2**20))
        for parent, limit_file in ((_own_cgroup(""), "memory.max"), (_own_cgroup("memory"), "memory.limit_in_bytes")):
            if parent is None or not (parent / "cgroup.procs").exists():
                continue
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / limit_file).write_text(limit)
                if limit_file == "memory.limit_in_bytes" and (path / "memory.memsw.limit_in_bytes").exists():
                    with contextlib.suppress(OSError):  # no swapping around the limit either
                        (path / "memory.memsw.limit_in_bytes").write_text(limit)
                return cls(path, limit_mb)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def join(self) -> None:
        """Move the calling process into this cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        events = self.path / "memory.events"
        return _counter(events if events.exists() else self.path / "memory.oom_control", "oom_kill") or 0

    def remove(self, wait_s: float = REMOVE_WAIT_S) -> bool:
        """Remove the cgroup once the processes in it are gone (the kernel refuses while one is in it): a child
        the process started (a fork server) may outlive it by a moment. Returns whether it is gone."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
