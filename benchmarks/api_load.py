"""A bounded load test of the REST API (``hwbench serve``) on 127.0.0.1: latency, refusals and the server's memory
with 1, 8 and 32 concurrent clients, and whether it is still up afterwards.

The warehouse is built in a temporary folder from the committed fixture of real measurements
(tests/predict/fixtures: 198 measured configurations, 2 failures, the host's measured peaks); nothing is made up.
``hwbench serve`` runs in a subprocess on a free port with its default limits (or those given here). Each client
is a thread with its own keep-alive connection (http.client) that sends, from a seeded mix:

    light   GET /tables, /coverage, /compare?model=..., /history?..., POST /sql with a small GROUP BY
    cpu     POST /sql: a 12,000 x 12,000 cross join counted (about a second of one core)
    memory  POST /sql: a 30,000 x 30,000 cross join collected into one list: passes the per-query memory
            limit and is answered 400

Each level stops after ``--requests`` requests or ``--seconds`` seconds, whichever comes first; a request waits
at most the server's time limit plus its queue wait. Printed per level: requests, throughput, p50/p99 latency
per kind, answers by status, the server's peak RSS while it ran (VmRSS sampled every 50 ms) and, at the end, its
high-water mark (VmHWM) and whether it still answers.

    .venv/bin/python benchmarks/api_load.py [--clients 1,8,32] [--requests 150] [--seconds 30]
        [--heavy-fraction 0.2] [--query-memory-limit 512MB] [--max-concurrent-queries 4] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "predict"))  # fixture_data: the committed real measurements

import polars as pl  # noqa: E402
from fixture_data import FIXTURES, seed_warehouse  # noqa: E402

from hwbench_pipeline.commands import serve  # noqa: E402

CPU_HEAVY_SQL = "SELECT count(*) AS n FROM range(12000) a, range(12000) b WHERE (a.range * b.range) % 7 = 3"
MEMORY_HEAVY_SQL = "SELECT list(a.range * b.range) AS l FROM range(30000) a, range(30000) b"
LIGHT_SQL = ("SELECT target, family, count(*) AS configs, median(p50_ms) AS median_p50_ms "
             "FROM inference_results_latest GROUP BY ALL ORDER BY ALL")


@dataclass(frozen=True)
class Request:
    kind: str  # light, cpu, memory
    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_warehouse(data_dir: Path) -> dict:
    """The fixture's real rows in a fresh warehouse; returns one measured configuration for /history."""
    measurements = pl.read_parquet(FIXTURES / "measurements.parquet")
    seed_warehouse(data_dir, measurements, pl.read_parquet(FIXTURES / "hardware_targets.parquet"))
    row = measurements.filter(pl.col("status") == "ok").row(0, named=True)
    return {"target": row["target"], "model": row["family"], "preset": row["preset"], "batch": row["batch_size"],
            "seq": row["seq_len"]}


def request_mix(configuration: dict) -> list[Request]:
    history = "&".join(f"{k}={v}" for k, v in configuration.items())
    return [
        Request("light", "GET", "/tables"),
        Request("light", "GET", "/coverage"),
        Request("light", "GET", f"/compare?model={configuration['model']}"),
        Request("light", "GET", f"/history?{history}"),
        Request("light", "POST", "/sql", json.dumps({"sql": LIGHT_SQL}).encode()),
    ]


def start_server(data_dir: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from hwbench_pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
               "serve", "--port", str(port), "--data-dir", str(data_dir),
               "--query-memory-limit", args.query_memory_limit, "--query-threads", str(args.query_threads),
               "--max-concurrent-queries", str(args.max_concurrent_queries),
               "--queue-seconds", str(args.queue_seconds), "--max-seconds", str(args.max_seconds)]
    env = {k: v for k, v in os.environ.items() if k != serve.TOKEN_VARIABLE}  # loopback, no token
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}: {server.stdout.read()[-2000:]}")
        if status_of(port, Request("light", "GET", "/tables"), timeout=2) == 200:
            return server
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit("the server did not answer within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on Ctrl-C
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def status_of(port: int, request: Request, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        return send(connection, request)
    except OSError:
        return 0
    finally:
        connection.close()


def send(connection: http.client.HTTPConnection, request: Request) -> int:
    headers = {"Content-Type": "application/json"} if request.body is not None else {}
    connection.request(request.method, request.path, body=request.body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def memory_kib(pid: int, field: str) -> int | None:
    """VmRSS / VmHWM of a process, in KiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """The highest VmRSS of ``pid`` seen while it runs, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib = pid, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, memory_kib(self.pid, "VmRSS") or 0)
            self.done.wait(0.05)


def run_level(port: int, clients: int, mix: list[Request], args: argparse.Namespace) -> tuple[list[Outcome], float]:
    """``clients`` threads sending until ``args.requests`` requests are sent or ``args.seconds`` have passed."""
    heavy = [Request("cpu", "POST", "/sql", json.dumps({"sql": CPU_HEAVY_SQL}).encode()),
             Request("memory", "POST", "/sql", json.dumps({"sql": MEMORY_HEAVY_SQL}).encode())]
    lock, outcomes = threading.Lock(), []
    issued = 0
    # A request can wait for a slot and then run to the time limit; past that, it counts as no answer.
    timeout = args.max_seconds + args.queue_seconds + 10
    deadline = time.monotonic() + args.seconds

    def client(index: int) -> None:
        nonlocal issued
        rng = random.Random(1000 * clients + index)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while time.monotonic() < deadline:
            with lock:
                if issued >= args.requests:
                    break
                issued += 1
            request = rng.choice(heavy) if rng.random() < args.heavy_fraction else rng.choice(mix)
            started = time.perf_counter()
            try:
                status = send(connection, request)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            with lock:
                outcomes.append(Outcome(request.kind, status, time.perf_counter() - started))
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def report(clients: int, outcomes: list[Outcome], wall: float, peak_kib: int) -> None:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome.seconds * 1000)
        by_kind["all"].append(outcome.seconds * 1000)
    print(f"\n{clients} client(s): {len(outcomes)} requests in {wall:.1f} s ({len(outcomes) / wall:.1f}/s), "
          f"server peak RSS {peak_kib / 1024:.0f} MiB")
    print(f"  {'kind':<7} {'n':>5} {'p50 ms':>9} {'p99 ms':>9}  statuses")
    for kind in ("light", "cpu", "memory", "all"):
        latencies = by_kind.get(kind)
        if not latencies:
            continue
        statuses = Counter(o.status for o in outcomes if kind in ("all", o.kind))
        shown = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(statuses.items()))
        print(f"  {kind:<7} {len(latencies):>5} {percentile(latencies, 50):>9.1f} {percentile(latencies, 99):>9.1f}"
              f"  {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per level (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=150, help="requests per level at most (default 150)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most (default 30)")
    parser.add_argument("--heavy-fraction", type=float, default=0.2,
                        help="share of heavy SQL (half cross join counted, half past the memory limit; default 0.2)")
    parser.add_argument("--query-memory-limit", default=serve.QUERY_MEMORY_LIMIT)
    parser.add_argument("--query-threads", type=int, default=serve.QUERY_THREADS)
    parser.add_argument("--max-concurrent-queries", type=int, default=serve.MAX_CONCURRENT_QUERIES)
    parser.add_argument("--queue-seconds", type=float, default=serve.QUEUE_SECONDS)
    parser.add_argument("--max-seconds", type=float, default=serve.MAX_SECONDS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary warehouse")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    root = Path(tempfile.mkdtemp(prefix="hwbench-api-load-"))
    try:
        configuration = build_warehouse(root / "data")
        port = free_port()
        server = start_server(root / "data", port, args)
        try:
            print(f"hwbench serve on 127.0.0.1:{port}, pid {server.pid}: {args.query_memory_limit} and "
                  f"{args.query_threads} thread(s) per query, {args.max_concurrent_queries} at once, "
                  f"{args.queue_seconds:g} s queue wait, {args.max_seconds:g} s time limit; "
                  f"{args.heavy_fraction:.0%} heavy SQL; per level at most {args.requests} requests or "
                  f"{args.seconds:g} s; host: {os.cpu_count()} CPUs")
            print(f"RSS after start: {(memory_kib(server.pid, 'VmRSS') or 0) / 1024:.0f} MiB")
            mix = request_mix(configuration)
            for clients in levels:
                sampler = RssSampler(server.pid)
                sampler.start()
                outcomes, wall = run_level(port, clients, mix, args)
                sampler.done.set()
                sampler.join()
                report(clients, outcomes, wall, sampler.peak_kib)
            alive = server.poll() is None
            answers = status_of(port, Request("light", "GET", "/tables"), timeout=30) if alive else 0
            high_water = memory_kib(server.pid, "VmHWM")
            print(f"\nafter the load: server process {'running' if alive else 'GONE'}, GET /tables -> "
                  f"{answers or 'no answer'}; peak RSS over the whole run (VmHWM) "
                  f"{(high_water or 0) / 1024:.0f} MiB")
            ok = alive and answers == 200
        finally:
            stop_server(server)
    finally:
        if args.keep:
            print(f"warehouse kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
