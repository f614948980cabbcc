"""Where hwbench keeps its files by default (no Dagster import: the engine and CLI use it too)."""

import os
import stat
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class UnsafeLockDirError(RuntimeError):
    """The lock directory exists but another user could take or hold the lock in it (one line, says what to do)."""


def default_data_dir() -> str:
    """HWBENCH_DATA_DIR, else data/ in the checkout."""
    return os.environ.get("HWBENCH_DATA_DIR", str(REPO_ROOT / "data"))


def host_lock_dir() -> Path:
    """Where the host-wide measurement lock lives: one folder per user, shared by all of that user's hwbench
    checkouts and data directories, so none of them measure at the same time.

    ``$XDG_RUNTIME_DIR/hwbench`` when that variable names a folder of this user's, else
    ``<temp dir>/hwbench-locks-<uid>``; created with mode 0700. In a world-writable place such as /tmp anyone
    can create that folder first, and anyone who can reach the lock file can hold it (flock needs only a
    read-only descriptor), so an existing folder that is a symlink, belongs to another user, or that group or
    others may enter, read or write is refused (UnsafeLockDirError) rather than swapped for another place: a
    lock elsewhere would not exclude this user's other runs. ``HWBENCH_LOCK_DIR`` overrides and is used as given
    (a folder shared by a group, for example, to make several users' runs take turns).
    """
    override = os.environ.get("HWBENCH_LOCK_DIR")
    if override:
        return Path(override)
    import tempfile

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and _owned_directory(Path(runtime)):
        return _private_directory(Path(runtime) / "hwbench")
    return _private_directory(Path(tempfile.gettempdir()) / f"hwbench-locks-{os.getuid()}")


def _owned_directory(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _private_directory(path: Path) -> Path:
    """``path``, created with mode 0700 if missing; UnsafeLockDirError if it exists and another user could use it."""
    try:
        path.mkdir(mode=0o700)
        path.chmod(0o700)  # mkdir's mode passes through the umask
    except FileExistsError:
        pass
    info = path.lstat()
    why = None
    if stat.S_ISLNK(info.st_mode):
        why = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        why = "is not a directory"
    elif info.st_uid != os.getuid():
        why = f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        why = f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o}, expected 0700)"
    if why:
        raise UnsafeLockDirError(f"refusing the measurement lock directory {path}: it {why}; remove it, or set "
                                 "HWBENCH_LOCK_DIR to a folder of your own")
    return path
