"""Run-wide settings: which profile to measure (the data directory is the warehouse resource's)."""

from __future__ import annotations

import os

import dagster as dg

from hwbench_pipeline.bench.profiles import Profile, load_profile


def default_profile() -> str:
    return os.environ.get("HWBENCH_PROFILE", "quick")


class HwbenchSettings(dg.ConfigurableResource):
    """The benchmark profile: smoke, quick, full or a YAML path."""

    profile: str = default_profile()

    def load_profile(self) -> Profile:
        return load_profile(self.profile)
