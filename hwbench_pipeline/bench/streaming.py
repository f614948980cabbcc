"""The client side of ``hwbench serve-generate``: send a request over the WebSocket and timestamp each token
message as it arrives, and run several clients at once (docs/streaming.md).

Client-side figures: TTFT is the first token message's arrival minus the moment the request was sent (the
connection is opened before, and not counted); inter-token latency (ITL) is the gap between consecutive token
messages' arrivals. Both are measured with ``time.perf_counter_ns`` in the client's process, so they hold
everything a user of the stream waits for: queueing and preparing on the server, the model's steps, JSON, the
socket and the client's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwbench_pipeline.bench.scenarios.generation.decode import percentiles


class StreamError(RuntimeError):
    """The server answered a request with an error message (``error_class``: its ``class``)."""

    def __init__(self, error_class: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.close_code = close_code


@dataclass
class StreamedSequence:
    """One streamed generation as the client saw it."""

    send_ns: int
    arrival_ns: list[int] = field(default_factory=list)  # each token message's arrival, in order
    messages: list[dict[str, Any]] = field(default_factory=list)  # the token messages as sent
    final: dict[str, Any] = field(default_factory=dict)  # the done (or cancelled) message
    close_code: int | None = None

    @property
    def tokens(self) -> list:
        return [m["token"] for m in self.messages]

    @property
    def ttft_ms(self) -> float:
        return (self.arrival_ns[0] - self.send_ns) / 1e6

    @property
    def inter_token_ms(self) -> list[float]:
        return [(b - a) / 1e6 for a, b in zip(self.arrival_ns, self.arrival_ns[1:], strict=False)]

    @property
    def total_ms(self) -> float:
        return (self.arrival_ns[-1] - self.send_ns) / 1e6


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def stream_request(url: str, request: dict[str, Any], *, token: str | None = None,
                         cancel_after: int | None = None) -> StreamedSequence:
    """Open a connection to ``url`` (``ws://host:port/generate``), send ``request``, and collect the stream, each
    token message stamped on arrival. ``cancel_after``: send ``{"cancel": true}`` once that many tokens came.
    Raises StreamError for an error message; an HTTP refusal of the handshake raises websockets' InvalidStatus."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    perf = time.perf_counter_ns
    async with connect(url, additional_headers=auth_headers(token), max_size=2**24) as ws:
        payload = json.dumps(request)
        sequence = StreamedSequence(send_ns=perf())
        await ws.send(payload)
        try:
            while True:
                raw = await ws.recv()
                arrived = perf()  # before parsing: the moment the message was available to the client
                message = json.loads(raw)
                if "index" in message:
                    sequence.arrival_ns.append(arrived)
                    sequence.messages.append(message)
                    if cancel_after is not None and len(sequence.messages) == cancel_after:
                        await ws.send(json.dumps({"cancel": True}))
                elif "error" in message:
                    await ws.wait_closed()
                    raise StreamError(message.get("class", "unknown"), message["error"], ws.close_code)
                else:  # done or cancelled: the last message
                    sequence.final = message
                    await ws.wait_closed()
                    break
        except ConnectionClosed:
            if not sequence.final:
                raise
        sequence.close_code = ws.close_code
    return sequence


def stream(url: str, request: dict[str, Any], *, token: str | None = None,
           cancel_after: int | None = None) -> StreamedSequence:
    """:func:`stream_request` from synchronous code."""
    return asyncio.run(stream_request(url, request, token=token, cancel_after=cancel_after))


async def run_clients(url: str, requests: list[dict[str, Any]], *, sequences: int, warmup: int = 0,
                      token: str | None = None) -> tuple[list[list[StreamedSequence]], float]:
    """One client per request, all at once, each streaming ``warmup`` + ``sequences`` generations one after the
    other (a new connection each). Returns each client's measured sequences and the seconds from the first
    measured send to the last measured arrival (warm-ups are waited for by every client before any measures)."""
    warm = asyncio.Barrier(len(requests))

    async def client(request: dict[str, Any]) -> list[StreamedSequence]:
        for _ in range(warmup):
            await stream_request(url, request, token=token)
        await warm.wait()
        return [await stream_request(url, request, token=token) for _ in range(sequences)]

    results = await asyncio.gather(*(client(r) for r in requests))
    first = min(s.send_ns for seqs in results for s in seqs)
    last = max(s.arrival_ns[-1] for seqs in results for s in seqs)
    return list(results), (last - first) / 1e9


def streaming_figures(per_client: list[list[StreamedSequence]], wall_s: float, batch: int,
                      new_tokens: int) -> dict[str, Any]:
    """TTFT and ITL percentiles over every client's sequences (client-side), the server's own TTFT and ITL from
    its done messages, and tokens/s: all clients' tokens over the wall time, and one client's from its median
    sequence."""
    sequences = [s for seqs in per_client for s in seqs]
    figures: dict[str, Any] = {
        **percentiles([s.ttft_ms for s in sequences], "ttft"),
        **percentiles([t for s in sequences for t in s.inter_token_ms], "itl"),
        **percentiles([s.final["ttft_ms"] for s in sequences], "server_ttft"),
        **percentiles([t for s in sequences for t in s.final["itl_ms"]], "server_itl"),
        **percentiles([s.final["queue_ms"] + s.final["prepare_ms"] for s in sequences], "server_queue_prepare"),
    }
    figures["tokens_per_s"] = batch * new_tokens * len(sequences) / wall_s
    figures["client_tokens_per_s"] = batch * new_tokens / (float(np.median([s.total_ms for s in sequences])) / 1e3)
    figures["sequences"] = len(sequences)
    return figures


def concurrency_sweep(url: str, request: dict[str, Any], client_counts: list[int], *, sequences: int,
                      warmup: int = 1, token: str | None = None) -> dict[int, dict[str, Any]]:
    """For each client count C: C clients at once, client i sending ``request`` with seed ``request's seed + i``
    (distinct prompts when the request has ``prompt_len``); p50/p99 TTFT and ITL and tokens/s per count, and each
    client's tokens (``tokens_by_client``) to check against in-process generation."""
    results: dict[int, dict[str, Any]] = {}
    for count in client_counts:
        requests = [{**request, "seed": request.get("seed", 0) + i} for i in range(count)]
        per_client, wall_s = asyncio.run(run_clients(url, requests, sequences=sequences, warmup=warmup,
                                                     token=token))
        figures = streaming_figures(per_client, wall_s, request.get("batch", 1), request["new_tokens"])
        figures["tokens_by_client"] = [seqs[0].tokens for seqs in per_client]
        results[count] = figures
    return results
