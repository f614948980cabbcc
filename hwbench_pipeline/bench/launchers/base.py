"""What every launcher does: run one configuration's measurement in a fresh process and return its row, or the
configuration's failure row when the process timed out or died, and say beforehand when it cannot place it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: a scenario's measurement of one configuration in the worker: (configuration, run id) -> row
MeasureFunction = Callable[[Any, str], dict]
#: a scenario's failure row: (configuration, run id, failure class, message) -> row
FailureFunction = Callable[[Any, str, str, str], dict]


class Launcher(Protocol):
    def unavailable(self, cfg: Any) -> str | None:
        """Why this launcher cannot place ``cfg`` (None when it can)."""

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                workspace: str | None = None) -> dict:
        """``cfg``'s row from a fresh process; a timeout or a dead process becomes ``failure``'s row.
        ``workspace`` names what the processes measuring one configuration share (its export cache), where
        the launcher keeps such a thing."""
