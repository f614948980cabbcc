"""Run-wide settings: which profile to measure and where the data lives."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from hwbench_pipeline.bench.profiles import Profile, load_profile
from hwbench_pipeline.paths import default_data_dir
from hwbench_pipeline.warehouse.store import Warehouse


def default_profile() -> str:
    return os.environ.get("HWBENCH_PROFILE", "quick")


class HwbenchSettings(dg.ConfigurableResource):
    """The benchmark profile (smoke, quick, full or a YAML path) and the data directory."""

    profile: str = default_profile()
    data_dir: str = default_data_dir()

    def load_profile(self) -> Profile:
        return load_profile(self.profile)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.data_dir)

    @property
    def reports_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "reports"

    @property
    def predictor_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "predictor"
