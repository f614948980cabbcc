"""The interface every backend implements."""

from __future__ import annotations

from typing import Any, Protocol


class Runner(Protocol):
    """A model made ready on one device, with its inputs bound."""

    #: the precision that actually runs (a backend may not honour a request: record the truth)
    precision: str
    #: whether the exported/converted model was loaded from the configuration's export cache (export_cache.py)
    from_cache: bool
    #: seconds spent writing the configuration's export cache, not part of loading the model
    cache_write_s: float

    def __call__(self) -> Any:
        """One inference call; returns only when the device has finished it."""

    def output(self) -> Any:
        """One call's main output as a CPU torch tensor (to compare backends)."""

    def peak_memory_mb(self) -> float | None:
        """Allocator peak on the device since load, or None where the process RSS is the measure."""

    def release(self) -> None:
        """Free the model and its device memory."""


class Backend(Protocol):
    name: str

    def available(self, device_kind: str) -> tuple[bool, str]:
        """Whether this backend runs on that kind of device here; the reason when not."""

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        """Precisions this backend can run on that device kind here."""

    def tolerance(self, precision: str) -> float:
        """Largest accepted difference from the torch fp32 output, relative to the output's largest magnitude."""

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str) -> Runner:
        """Move/convert the model for the device and precision; return a runner bound to the inputs."""
