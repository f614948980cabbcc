"""One client's connection to ``/generate``: its place in the queue for a generation slot, its generation in a
worker thread (never on the event loop) with each step sent as it comes, and its end (done, cancelled, refused
or failed)."""

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from hwbench_pipeline.bench.failures import classify
from hwbench_pipeline.bench.served_model import ServedModel
from hwbench_pipeline.bench.serving.protocol import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    GenerateRequest,
)
from hwbench_pipeline.bench.serving.stream import GenerationCancelled, Progress, StreamStats, run_generation


@dataclass
class GenerateServer:
    """What every session of one app shares: the model, the counters, the generation slots (at most
    ``max_clients`` at once, ``max_waiting`` more waiting ``queue_seconds`` at most) with one worker thread
    each, and the running generations' progress (stopped when the app shuts down)."""

    served: ServedModel
    stats: StreamStats
    slots: asyncio.BoundedSemaphore
    executor: ThreadPoolExecutor
    max_clients: int
    max_waiting: int
    queue_seconds: float
    active: set[Progress] = field(default_factory=set)


class Session:
    """One client's connection: its request, its place in the queue, its generation and its cancel flag."""

    def __init__(self, websocket: WebSocket, server: GenerateServer) -> None:
        self.ws = websocket
        self.server = server
        self.progress = Progress()  # its cancel flag is read by the worker thread before each step
        self.stopped = asyncio.Event()  # the same, for the event loop
        self.gone = False  # the client disconnected: nothing more can be sent
        self.protocol_error: str | None = None

    async def receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            self.gone = True
            return None
        return message.get("text") if message.get("text") is not None else message.get("bytes", b"")

    async def send(self, payload: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            await self.ws.send_text(json.dumps(payload))
        except (WebSocketDisconnect, RuntimeError, OSError):  # closed under us: stop generating
            self.gone = True
            self.stop()

    def stop(self) -> None:
        self.progress.stop()
        self.stopped.set()

    async def close(self, code: int) -> None:
        if self.gone or self.ws.application_state != WebSocketState.CONNECTED:
            return
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.ws.close(code)

    async def fail(self, error_class: str, message: str, code: int) -> None:
        await self.send({"error": " ".join(message.split()), "class": error_class})
        await self.close(code)

    async def watch(self) -> None:
        """While queued or generating: a cancel message or the client leaving stops the generation."""
        while not self.gone:
            text = await self.receive()
            if text is None:
                self.stop()
                return
            try:
                cancelled = json.loads(text) == {"cancel": True}
            except (ValueError, UnicodeDecodeError):
                cancelled = False
            if not cancelled:
                self.protocol_error = 'only {"cancel": true} may be sent after the request'
            self.stop()
            return

    async def wait_for_slot(self) -> str | None:
        """Take a generation slot; the reason when none came (busy, or the client stopped first)."""
        server, stats = self.server, self.server.stats
        if stats.running + stats.waiting >= server.max_clients + server.max_waiting:
            return (f"busy: {stats.running} generating and {stats.waiting} waiting (this server's "
                    f"--max-clients {server.max_clients}, --max-waiting {server.max_waiting}); retry later")
        stats.add(waiting=1)
        acquire = asyncio.ensure_future(server.slots.acquire())
        stopped = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({acquire, stopped}, timeout=server.queue_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stats.add(waiting=-1)
            stopped.cancel()
        if acquire.done() and not acquire.cancelled():
            if self.progress.cancel.is_set():  # stopped while the slot came: give it to the next one
                server.slots.release()
                return "stopped"
            return None
        acquire.cancel()  # a slot handed to a cancelled waiter goes on to the next waiter
        if self.progress.cancel.is_set():
            return "stopped"
        return (f"busy: no generation slot came free within {server.queue_seconds:g} s (this server's "
                f"--max-clients {server.max_clients}, --queue-seconds {server.queue_seconds:g}); retry later")

    async def serve(self, request: GenerateRequest) -> None:
        received = time.perf_counter_ns()
        watcher = asyncio.create_task(self.watch())
        try:
            refusal = await self.wait_for_slot()
            if refusal is not None:
                await self.finish_unstarted(refusal)
                return
            queue_ms = (time.perf_counter_ns() - received) / 1e6
            try:
                await self.generate(request, queue_ms)
            finally:
                self.server.slots.release()
        finally:
            watcher.cancel()

    async def finish_unstarted(self, refusal: str) -> None:
        stats = self.server.stats
        if refusal != "stopped":
            stats.add(refused=1)
            await self.fail("busy", refusal, CLOSE_TRY_AGAIN)
        elif self.protocol_error:
            stats.add(refused=1)
            await self.fail("bad_request", self.protocol_error, CLOSE_POLICY)
        else:
            stats.add(cancelled=0 if self.gone else 1, disconnected=1 if self.gone else 0)
            await self.send({"cancelled": True, "tokens_sent": 0, "steps": 0, "steps_when_cancelled": 0})
            await self.close(CLOSE_NORMAL)

    async def generate(self, request: GenerateRequest, queue_ms: float) -> None:
        server, stats = self.server, self.server.stats
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(message: dict[str, Any]) -> None:  # called in the worker thread
            loop.call_soon_threadsafe(messages.put_nowait, message)

        def work() -> dict[str, Any]:
            try:
                return run_generation(server.served, request, emit, self.progress, stats)
            finally:
                emit(None)  # the end, however it ended

        stats.add(running=1)
        server.active.add(self.progress)
        try:
            future = loop.run_in_executor(server.executor, work)
            sent = 0
            while (message := await messages.get()) is not None:
                await self.send(message)  # at once: the next token may still be computing
                sent += 0 if self.gone else 1
            try:
                done = await future
            except GenerationCancelled:
                stats.stopped(self.progress)
                await self.finish_cancelled(sent)
                return
            except Exception as exc:  # out of memory, a runtime error: this client's, not the server's
                stats.add(failed=1)
                await self.fail(classify(exc), f"{type(exc).__name__}: {exc}"[:500], CLOSE_INTERNAL)
                return
        finally:
            server.active.discard(self.progress)
            stats.add(running=-1)
        if self.gone:
            stats.add(disconnected=1)
            return
        if self.protocol_error:  # the generation had finished before the stray message mattered
            stats.add(failed=1)
            await self.fail("bad_request", self.protocol_error, CLOSE_POLICY)
            return
        stats.add(completed=1)
        await self.send({**done, "queue_ms": queue_ms})
        await self.close(CLOSE_NORMAL)

    async def finish_cancelled(self, sent: int) -> None:
        stats = self.server.stats
        if self.gone:
            stats.add(disconnected=1)
        elif self.protocol_error:
            stats.add(failed=1)
            await self.fail("bad_request", self.protocol_error, CLOSE_POLICY)
        else:
            stats.add(cancelled=1)
            await self.send({"cancelled": True, "tokens_sent": sent, "steps": self.progress.steps,
                             "steps_when_cancelled": self.progress.steps_when_stopped})
            await self.close(CLOSE_NORMAL)
