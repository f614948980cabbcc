"""One generation streamed step by step from its worker thread: the server's counters, the generation's
progress and stop flag, and the Generator wrapper that emits each step's tokens as soon as they are on the host."""

import threading
import time
from collections.abc import Callable
from typing import Any

from hwbench_pipeline.bench.scenarios.generation.decode import generate
from hwbench_pipeline.bench.served_model import ServedModel
from hwbench_pipeline.bench.serving.protocol import GenerateRequest


class StreamStats:
    """What the server has done, for /stats and tests: ``steps`` counts model steps (prefill and each decode
    step) as they finish, so a cancelled generation shows that it stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # steps are counted in worker threads, the rest on the event loop
        self.steps = 0
        self.running = 0
        self.waiting = 0
        self.peak_running = 0
        # the most steps any generation ran after it was told to stop: at most 1, the step already running
        self.max_steps_after_stop = 0
        self.outcomes = {"completed": 0, "cancelled": 0, "disconnected": 0, "failed": 0, "refused": 0}

    def step(self) -> None:
        with self._lock:
            self.steps += 1

    def add(self, **changes: int) -> None:
        with self._lock:
            for name, change in changes.items():
                if name in self.outcomes:
                    self.outcomes[name] += change
                else:
                    setattr(self, name, getattr(self, name) + change)
            self.peak_running = max(self.peak_running, self.running)

    def stopped(self, progress: "Progress") -> None:
        with self._lock:
            if progress.steps_when_stopped is not None:
                self.max_steps_after_stop = max(self.max_steps_after_stop,
                                                progress.steps - progress.steps_when_stopped)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"steps": self.steps, "running": self.running, "waiting": self.waiting,
                    "peak_running": self.peak_running, "max_steps_after_stop": self.max_steps_after_stop,
                    **self.outcomes}


class Progress:
    """One generation's step count and stop flag, shared by its worker thread (which counts) and the event loop
    (which stops it). A stop notes the steps run so far: the step running then still finishes, no other starts."""

    def __init__(self) -> None:
        self.steps = 0
        self.cancel = threading.Event()
        self.steps_when_stopped: int | None = None

    def stop(self) -> None:
        if not self.cancel.is_set():
            self.steps_when_stopped = self.steps
            self.cancel.set()


class GenerationCancelled(Exception):
    """Raised inside the decode loop, before the next step, once the client cancelled or left."""


class StreamingSteps:
    """The Generator that :func:`generate` drives: each call checks the cancel flag first (so no step starts after
    a cancel), runs the real step, counts it, and hands its tokens on at once with their time since prefill
    began."""

    def __init__(self, generator: Any, emit: Callable[[dict[str, Any]], None], progress: Progress,
                 stats: StreamStats, batch: int) -> None:
        self.generator, self.emit, self.progress, self.stats, self.batch = generator, emit, progress, stats, batch
        self.start_ns = 0
        self.token_ns: list[int] = []

    def _stepped(self, token: Any) -> Any:
        now = time.perf_counter_ns()
        self.stats.step()
        self.progress.steps += 1  # one writer (this thread); the event loop only reads it
        self.token_ns.append(now)
        ids = token.tolist()
        self.emit({"index": len(self.token_ns) - 1, "token": ids[0] if self.batch == 1 else ids,
                   "server_ms": (now - self.start_ns) / 1e6})
        return token

    def start(self, inputs: dict[str, Any]) -> Any:
        if self.progress.cancel.is_set():
            raise GenerationCancelled
        self.start_ns = time.perf_counter_ns()
        return self._stepped(self.generator.start(inputs))

    def next(self, tokens: Any) -> Any:
        if self.progress.cancel.is_set():
            raise GenerationCancelled
        return self._stepped(self.generator.next(tokens))


def run_generation(served: ServedModel, request: GenerateRequest, emit: Callable[[dict[str, Any]], None],
                   progress: Progress, stats: StreamStats) -> dict[str, Any]:
    """Make the inputs and a Generator, decode greedily through :func:`generate` with each step emitted as it
    comes, and return the server-side figures (the done message, less the fields the caller adds)."""
    t0 = time.perf_counter_ns()
    prompt_len = len(request.prompt) if request.prompt is not None else request.prompt_len
    inputs = served.inputs(request.prompt, prompt_len, request.seed, request.batch)
    generator = served.prepare(inputs, request.new_tokens)
    try:
        prepare_ms = (time.perf_counter_ns() - t0) / 1e6
        steps = StreamingSteps(generator, emit, progress, stats, request.batch)
        sequence = generate(steps, inputs, request.new_tokens)
    finally:
        generator.release()
    matrix = sequence.token_matrix().tolist()  # (batch, new)
    stamps = steps.token_ns
    return {"done": True, "tokens": matrix[0] if request.batch == 1 else matrix,
            "ttft_ms": (stamps[0] - steps.start_ns) / 1e6,
            "itl_ms": [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:], strict=False)],
            "prepare_ms": prepare_ms, "steps": len(stamps)}
