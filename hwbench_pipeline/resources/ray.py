"""Where benchmarks run: a Ray cluster at RAY_ADDRESS, or a private local Ray instance by default."""

from __future__ import annotations

import os

import dagster as dg


class RayResource(dg.ConfigurableResource):
    """``address`` empty: start local Ray for the measurement (guarded by a host-wide lock)."""

    address: str = os.environ.get("RAY_ADDRESS", "")
    timeout_s: float = 0.0  # 0: the profile's per-configuration timeout

    @property
    def cluster_address(self) -> str | None:
        return self.address or None
