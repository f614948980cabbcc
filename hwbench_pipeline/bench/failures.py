"""Failure classes: a configuration that cannot be measured becomes a row saying why, never a gap."""

from __future__ import annotations

FAILURE_CLASSES = (
    "unsupported_configuration",  # precision/device/batch the backend refuses
    "unsupported_operator",       # an op the runtime or exporter lacks
    "export_error",               # export/conversion failed for another reason
    "out_of_memory",
    "timeout",
    "numerical_mismatch",
    "worker_crashed",             # the measuring process died (signal, node lost)
    "model_build_error",          # the model could not be built from its config
    "missing_dependency",         # the model needs an optional package that is not installed
    "runtime_error",              # anything else, with its message
    "skipped",                    # not run: a rule of the run ruled it out, the message says which (a smaller
                                  # batch was already over the memory budget); nobody observed it fail
)


class BenchmarkFailure(RuntimeError):
    """Raised inside a measurement with a known failure class."""

    def __init__(self, failure_class: str, message: str) -> None:
        if failure_class not in FAILURE_CLASSES:
            raise ValueError(f"unknown failure class {failure_class!r}")
        super().__init__(message)
        self.failure_class = failure_class


class UnsupportedConfigurationError(BenchmarkFailure):
    def __init__(self, message: str) -> None:
        super().__init__("unsupported_configuration", message)


def classify(exc: BaseException) -> str:
    """Map an exception raised while measuring to a failure class."""
    if isinstance(exc, BenchmarkFailure):
        return exc.failure_class
    if isinstance(exc, MemoryError):
        return "out_of_memory"
    text = f"{type(exc).__name__}: {exc}".lower()
    if "outofmemory" in text or "out of memory" in text or "can't allocate memory" in text:
        return "out_of_memory"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if "not implemented for" in text or "unsupported operator" in text or "no kernel" in text:
        return "unsupported_operator"
    return "runtime_error"
