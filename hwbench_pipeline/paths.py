"""Where hwbench keeps its files by default (no Dagster import: the engine and CLI use it too)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """HWBENCH_DATA_DIR, else data/ in the checkout."""
    return os.environ.get("HWBENCH_DATA_DIR", str(REPO_ROOT / "data"))


def host_lock_dir() -> Path:
    """Where the host-wide measurement lock lives: shared by every hwbench checkout and data directory on
    this host (HWBENCH_LOCK_DIR overrides), so no two of them measure at the same time."""
    import tempfile

    return Path(os.environ.get("HWBENCH_LOCK_DIR", Path(tempfile.gettempdir()) / "hwbench-locks"))
