"""The interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Runner(Protocol):
    """A model made ready on one device, with its inputs bound."""

    #: the number format that actually runs (fp32, bf16, fp16, int8; bench/precision.py): a backend may not
    #: honour a request, so it reports what it observed (weights' dtype, the runtime's own report)
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

    # Optional, where a runner has them (the browser's): ``timed_call() -> float``, one call timed where the
    # model runs, in ms (the scenarios time it instead of the call around it); ``own_pids() -> list[int]``, the
    # other processes running the model (their CPU time is not foreign load); ``row_fields() -> dict``, columns
    # about where it ran, added to its row before release.


class Backend(Protocol):
    name: str

    def available(self, device_kind: str) -> tuple[bool, str]:
        """Whether this backend runs on that kind of device here; the reason when not."""

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        """The precision specs (bench/precision.py: fp32, bf16, fp16, int8-dynamic, int8-static) this backend
        can run on that device kind here."""

    def unsupported_reason(self, precision: str, device_kind: str) -> str | None:
        """Why this backend cannot run the precision spec on that device kind here (one line, naming what was
        detected: "this CPU has no native bf16"), or None when it can."""

    def tolerance(self, precision: str) -> float:
        """Largest accepted difference from the torch fp32 output, relative to the output's largest magnitude,
        for a precision spec."""

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str, *,
                calibration: Sequence[dict[str, Any]] = ()) -> Runner:
        """Move/convert/quantize the model for the device and precision spec; return a runner bound to the
        inputs. ``calibration``: input batches made like ``inputs`` (other seeds) for a static recipe."""


class Generator(Protocol):
    """A generative model made ready on one device for greedy decoding with a KV cache (the generation
    scenario, docs/generation.md). Each :meth:`start` begins new sequences with a fresh cache."""

    #: the number format the weights ran in, observed (as :attr:`Runner.precision`)
    precision: str
    #: the KV cache's element format, observed: ``fp32``, ``bf16``, ``u8`` (OpenVINO), ``hqq-4bit`` …
    cache_precision: str
    #: the cache that ran: ``dynamic``, ``static`` (torch), ``past-io`` (past key/values passed in and out of
    #: an exported graph), ``stateful`` (OpenVINO keeps it in the compiled model's state)
    cache_implementation: str
    from_cache: bool
    cache_write_s: float

    def start(self, inputs: dict[str, Any]) -> Any:
        """Prefill: run the prompt ``inputs`` (as :func:`models.make_inputs` makes them) into a fresh cache and
        return each sequence's first new token, greedy: a (batch,) int64 CPU tensor. Returns only when the
        device has finished."""

    def next(self, tokens: Any) -> Any:
        """Decode one step: feed each sequence's last token ((batch,) int64), return the next ones likewise."""

    def last_logits(self) -> Any:
        """The last step's logits at the final position, (batch, vocab) fp32 on the CPU (for checks; untimed)."""

    def cache_bytes(self) -> int | None:
        """Bytes the KV cache holds now (its allocation, for a preallocated cache); None where the runtime does
        not expose it."""

    def peak_memory_mb(self) -> float | None:
        """Allocator peak on the device since load, or None where the process RSS is the measure."""

    def release(self) -> None:
        """Free the model, its cache and device memory."""


class GeneratingBackend(Protocol):
    """What a backend adds to :class:`Backend` to run the generation scenario."""

    def generation_caches(self, device_kind: str) -> tuple[str, ...]:
        """The cache implementations this backend offers for generation there, its default first."""

    def generation_precisions(self, device_kind: str) -> tuple[str, ...]:
        """The precision specs this backend's decode loop runs there (none where it has no decode loop)."""

    def prepare_generator(self, model: Any, inputs: dict[str, Any], device: str, precision: str, *,
                          max_new_tokens: int, cache: str) -> Generator:
        """Make ``model`` (a transformers generative model, eval, fp32 on the CPU) ready to decode prompts shaped
        like ``inputs`` plus up to ``max_new_tokens`` tokens with the named ``cache``. Raises a
        :class:`~hwbench_pipeline.bench.failures.BenchmarkFailure` with its class for what it cannot run
        (``unsupported_configuration``: an architecture this runtime's decode loop does not handle)."""
