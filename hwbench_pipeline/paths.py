"""Where hwbench keeps its files by default (no Dagster import: the engine and CLI use it too)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """HWBENCH_DATA_DIR, else data/ in the checkout."""
    return os.environ.get("HWBENCH_DATA_DIR", str(REPO_ROOT / "data"))
