"""The client side of ``hwbench serve-generate``: send a request over the WebSocket and timestamp each token
message as it arrives, and run several clients at once (docs/streaming.md).

Client-side figures: TTFT is the first token message's arrival minus the moment the request was sent (the
connection is opened before, and not counted); inter-token latency (ITL) is the gap between consecutive token
messages' arrivals. Both are measured with ``time.perf_counter_ns`` in the client's process, so they hold
everything a user of the stream waits for: queueing and preparing on the server, the model's steps, JSON, the
socket and the client's own event loop.

:func:`streaming_fields` measures one generation configuration streamed, for the generation scenario's row: the
server in a thread of the calling process (over the model already built there), the clients in a child process.
``python -m hwbench_pipeline.bench.streaming`` is that child: it runs :func:`concurrency_sweep` and prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwbench_pipeline.bench.scenarios.generation.decode import percentiles

if TYPE_CHECKING:
    from hwbench_pipeline.bench.served_model import ServedModel

#: in the pipeline, measured streamed sequences per client at each client count, and short warm-ups before them
#: (a new connection, a Generator, the prefill and a decode step: everything that is cold, at a fraction of a
#: sequence's time): with 1, 2 and 4 clients, 21 measured sequences, about 8 s for llama/small (prompt 64, 32 new
#: tokens, one thread) on 2 cores (docs/streaming.md, "In the pipeline")
PIPELINE_SEQUENCES = 3
PIPELINE_WARMUP = 1
#: the most a pipeline row's streaming sweep may take (about 7 s for llama/small): well inside a configuration's
#: timeout, so that a hung sweep becomes a note on the row instead of a timeout that loses its in-process figures
PIPELINE_SWEEP_TIMEOUT_S = 120.0
PIPELINE_WARMUP_TOKENS = 2
#: how long the whole client sweep may take before the child process is killed
SWEEP_TIMEOUT_S = 600.0


class StreamError(RuntimeError):
    """The server answered a request with an error message (``error_class``: its ``class``)."""

    def __init__(self, error_class: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
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
                      warmup_new_tokens: int | None = None,
                      token: str | None = None) -> tuple[list[list[StreamedSequence]], float]:
    """One client per request, all at once, each streaming ``warmup`` + ``sequences`` generations one after the
    other (a new connection each). Returns each client's measured sequences and the seconds from the first
    measured send to the last measured arrival (warm-ups are waited for by every client before any measures).
    ``warmup_new_tokens``: the warm-ups generate that many tokens (default: the request's)."""
    warm = asyncio.Barrier(len(requests))

    async def client(request: dict[str, Any]) -> list[StreamedSequence]:
        short = request if warmup_new_tokens is None else {**request, "new_tokens": warmup_new_tokens}
        for _ in range(warmup):
            await stream_request(url, short, token=token)
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
                      warmup: int = 1, warmup_new_tokens: int | None = None,
                      token: str | None = None) -> dict[int, dict[str, Any]]:
    """For each client count C: C clients at once, client i sending ``request`` with seed ``request's seed + i``
    (distinct prompts when the request has ``prompt_len``); p50/p99 TTFT and ITL and tokens/s per count, each
    client's tokens (``tokens_by_client``, its first sequence's) to check against in-process generation, and
    whether each client's sequences all gave those tokens (``tokens_consistent``)."""
    results: dict[int, dict[str, Any]] = {}
    for count in client_counts:
        requests = [{**request, "seed": request.get("seed", 0) + i} for i in range(count)]
        per_client, wall_s = asyncio.run(run_clients(url, requests, sequences=sequences, warmup=warmup,
                                                     warmup_new_tokens=warmup_new_tokens, token=token))
        figures = streaming_figures(per_client, wall_s, request.get("batch", 1), request["new_tokens"])
        figures["tokens_by_client"] = [seqs[0].tokens for seqs in per_client]
        # greedy decoding: every sequence of a client must repeat its first one
        figures["tokens_consistent"] = all(s.tokens == seqs[0].tokens for seqs in per_client for s in seqs)
        results[count] = figures
    return results


def token_rows(tokens: list, batch: int) -> list[list[int]]:
    """A stream's token messages' tokens (one id per step, or B ids per step for a batch) as one row of ids per
    sequence, as in-process generation's token matrix."""
    return [list(tokens)] if batch == 1 else [list(row) for row in zip(*tokens, strict=True)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel picks it; it could be taken again before the server binds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(served: ServedModel, *, max_clients: int, max_new_tokens: int, max_batch: int = 1,
                    start_timeout_s: float = 60.0) -> Iterator[str]:
    """``served`` behind the streaming app (``hwbench serve-generate``'s) under uvicorn in a daemon thread of this
    process, on a free 127.0.0.1 port, without a token; yields the ``ws://`` URL of /generate and stops the server
    on exit. Its generations run in the app's worker threads, with this process's torch thread count (threads
    made later inherit torch's setting)."""
    import uvicorn

    from hwbench_pipeline.bench.serving.app import MAX_MESSAGE_BYTES, create_generate_app

    for attempt in range(3):  # the port can be taken between free_port() and the bind: then another one
        port = free_port()
        app = create_generate_app(served, max_clients=max_clients, max_new_tokens=max_new_tokens,
                                  max_batch=max_batch)
        # log_config=None: leave the calling process's logging as it is (uvicorn's default rewrites its loggers)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               log_config=None, access_log=False, ws_max_size=MAX_MESSAGE_BYTES))
        thread = threading.Thread(target=server.run, name=f"serve-generate-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if server.started:
            break
        server.should_exit = True
        thread.join(10)
        if thread.is_alive() or attempt == 2:
            raise RuntimeError(f"the streaming server did not start on 127.0.0.1:{port}")
    try:
        yield f"ws://127.0.0.1:{port}/generate"
    finally:
        server.should_exit = True
        thread.join(30)
        if thread.is_alive():  # a connection that does not close: drop it
            server.force_exit = True
            thread.join(10)


def sweep_in_child(url: str, request: dict[str, Any], client_counts: list[int], *, sequences: int,
                   warmup: int = 1, warmup_new_tokens: int | None = None,
                   timeout_s: float = SWEEP_TIMEOUT_S) -> dict[int, dict[str, Any]]:
    """:func:`concurrency_sweep` run by a child Python process (``python -m hwbench_pipeline.bench.streaming``), so
    that the clients' event loop does not share the server's GIL, as a real client does not. Raises StreamError
    for an error message from the server, RuntimeError when the child fails otherwise."""
    root = str(Path(__file__).resolve().parents[2])  # the child imports this same checkout
    env = {key: value for key, value in os.environ.items() if key != "HWBENCH_API_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "hwbench_pipeline.bench.streaming", "--url", url, "--request",
               json.dumps(request), "--clients", ",".join(str(c) for c in client_counts), "--sequences",
               str(sequences), "--warmup", str(warmup)]
    if warmup_new_tokens is not None:
        command += ["--warmup-new-tokens", str(warmup_new_tokens)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the streaming clients did not finish within {timeout_s:g} s") from exc
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if done.returncode != 0 or answer is None:
        if answer and "stream_error" in answer:
            error = answer["stream_error"]
            raise StreamError(error["class"], error["message"], error["close_code"])
        raise RuntimeError(f"the streaming clients failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]}")
    return {int(count): figures for count, figures in answer.items()}


class ForeignCpu:
    """Other processes' share of all cores' time between start() and stop(): this process (the server) and its
    finished children (the clients) left out. On a shared machine it says how far the p99s were widened."""

    def start(self) -> None:
        from hwbench_pipeline.bench.trackers.system_load import read_cpu_times

        self.before, self.children_before = read_cpu_times(), self.children_ticks()

    def stop(self) -> float | None:
        from hwbench_pipeline.bench.trackers.system_load import read_cpu_times

        after = read_cpu_times()
        if self.before is None or after is None or after.total <= self.before.total:
            return None
        ours = (after.own - self.before.own) + (self.children_ticks() - self.children_before)
        return max(after.busy - self.before.busy - ours, 0.0) / (after.total - self.before.total)

    @staticmethod
    def children_ticks() -> float:
        times = os.times()
        return (times.children_user + times.children_system) * os.sysconf("SC_CLK_TCK")


def streaming_fields(served: ServedModel, prompt_len: int, new_tokens: int, *, in_process: Mapping[str, Any],
                     seed: int = 0, batch: int = 1, clients: tuple[int, ...] = (1, 2, 4),
                     sequences: int = PIPELINE_SEQUENCES, warmup: int = PIPELINE_WARMUP,
                     threads: int | None = None, timeout_s: float = PIPELINE_SWEEP_TIMEOUT_S) -> dict[str, Any]:
    """Measure ``served`` streamed, for the generation scenario's row, after it measured the same configuration
    in process: the real server (:func:`serve_in_thread`) over this process's model, then for each count C in
    ``clients`` C clients at once in a child process (:func:`sweep_in_child`), client i asking for ``prompt_len``
    tokens of the family's prompt from ``seed + i`` (client 0: the scenario's own prompt), ``batch`` sequences and
    ``new_tokens`` new tokens ``sequences`` times each, after ``warmup`` short ones (PIPELINE_WARMUP_TOKENS new
    tokens); then the server stops.

    ``in_process``: the scenario's figures for the configuration, ``ttft_p50_ms`` and ``itl_p50_ms``, and
    ``tokens``, its generated tokens (batch x new_tokens, nested lists or a tensor). ``threads``: torch threads
    for the server's generations (default: this process's setting, which the scenario set to the
    configuration's). Torch targets only, as ``hwbench serve-generate``.

    Returns flat row fields; the lists are aligned with ``stream_clients``:
    ``stream_clients`` (list[int]), ``stream_sequences`` (int, measured per client at each count),
    ``stream_ttft_p50_ms``, ``stream_ttft_p99_ms``, ``stream_itl_p50_ms``, ``stream_itl_p99_ms`` (list[float],
    client-side), ``stream_server_ttft_p50_ms``, ``stream_server_itl_p50_ms`` (list[float], the server's own),
    ``stream_tokens_per_s`` (list[float], all clients' tokens over the wall time), ``stream_overhead_ttft_ms``,
    ``stream_overhead_itl_ms`` (float | None: one client's streamed p50 minus the in-process p50; None without 1
    in ``clients``), ``stream_tokens_match`` (bool: client 0 got the in-process tokens at every count, every client
    the same tokens in each of its sequences and at every count), ``stream_foreign_cpu_fraction`` (float | None:
    other processes' share of all cores while streaming), ``stream_seconds`` (float: the whole measurement,
    server start and stop included)."""
    from hwbench_pipeline.bench.hardware import parse_target

    counts = [int(c) for c in clients]
    if not counts or min(counts) < 1 or sequences < 1 or warmup < 0:
        raise ValueError(f"clients must be positive counts and sequences >= 1, got {clients}, {sequences}")
    missing = [key for key in ("ttft_p50_ms", "itl_p50_ms", "tokens") if in_process.get(key) is None]
    if missing:
        raise ValueError(f"in_process lacks {', '.join(missing)}")
    if parse_target(served.target).backend != "torch":
        raise ValueError(f"streaming is measured on torch targets only, got {served.target}")
    expected = in_process["tokens"]
    expected = expected.tolist() if hasattr(expected, "tolist") else [list(row) for row in expected]

    import torch

    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    cpu = ForeignCpu()
    try:
        with serve_in_thread(served, max_clients=max(counts), max_new_tokens=new_tokens, max_batch=batch) as url:
            cpu.start()
            sweep = sweep_in_child(url, {"prompt_len": prompt_len, "seed": seed, "new_tokens": new_tokens,
                                         "batch": batch}, counts, sequences=sequences, warmup=warmup,
                                   warmup_new_tokens=min(new_tokens, PIPELINE_WARMUP_TOKENS), timeout_s=timeout_s)
            foreign = cpu.stop()
    finally:
        torch.set_num_threads(threads_before)
    figures = [sweep[c] for c in counts]

    by_client: dict[int, list] = {}  # client index -> its tokens at the first count that had it
    match = True
    for f in figures:
        match = match and f["tokens_consistent"] and token_rows(f["tokens_by_client"][0], batch) == expected
        for i, tokens in enumerate(f["tokens_by_client"]):
            match = match and by_client.setdefault(i, tokens) == tokens
    one = sweep.get(1)
    return {
        "stream_clients": counts,
        "stream_sequences": sequences,
        **{f"stream_{name}": [f[name] for f in figures]
           for name in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "server_ttft_p50_ms",
                        "server_itl_p50_ms", "tokens_per_s")},
        "stream_overhead_ttft_ms": one["ttft_p50_ms"] - float(in_process["ttft_p50_ms"]) if one else None,
        "stream_overhead_itl_ms": one["itl_p50_ms"] - float(in_process["itl_p50_ms"]) if one else None,
        "stream_tokens_match": bool(match),
        "stream_foreign_cpu_fraction": foreign,
        "stream_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    """The child of :func:`sweep_in_child`: the sweep's figures as one JSON line on stdout (an error message from
    the server as ``{"stream_error": ...}``, exit 3)."""
    parser = argparse.ArgumentParser(description="streaming clients against a running serve-generate")
    parser.add_argument("--url", required=True)
    parser.add_argument("--request", required=True, help="the request, JSON")
    parser.add_argument("--clients", required=True, help="comma-separated client counts")
    parser.add_argument("--sequences", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--warmup-new-tokens", type=int, default=None)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    try:
        sweep = concurrency_sweep(args.url, json.loads(args.request), counts, sequences=args.sequences,
                                  warmup=args.warmup, warmup_new_tokens=args.warmup_new_tokens)
    except StreamError as exc:
        print(json.dumps({"stream_error": {"class": exc.error_class, "message": exc.message,
                                           "close_code": exc.close_code}}))
        return 3
    print(json.dumps(sweep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
