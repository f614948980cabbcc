"""Streamed generation (``hwbench serve-generate``) against the same generation in process, side by side: TTFT
and inter-token latency p50/p99, tokens/s, and what streaming adds (streamed minus in-process) with 1, 2 and 4
clients at once. Everything is measured; nothing is simulated.

In process: the model built with the server's seed, one thread per client, each with its own Generator
(bench/backends, the server's ``prepare``) driven by ``generate()`` (bench/scenarios/generation/decode.py); TTFT
and ITL from generate()'s own timestamps. Streamed: ``hwbench serve-generate``'s app under uvicorn in a thread of
this process, over the same model, on a free loopback port, and one asyncio client per client in a child process
(bench/streaming.py: ``serve_in_thread``, ``sweep_in_child``, as the generation scenario measures it)
timestamping each token message as it arrives; TTFT from the send of the request (the connection is opened
before), ITL between arrivals. Client i of each count sends ``prompt_len`` with seed i, and the in-process client
i generates from the same prompt: the tokens are checked equal. The two run one after the other for each count,
with the same torch thread count, the server idle while in-process runs. tokens/s: every client's tokens over the
wall time from the first measured request to the last token. The machine's CPU use by other processes in each
phase is printed: on a shared machine it widens the p99s.

    .venv/bin/python benchmarks/streaming.py [--model llama] [--preset small] [--prompt 64] [--new-tokens 32]
        [--clients 1,2,4] [--sequences 5] [--warmup 1] [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from hwbench_pipeline.bench.scenarios.generation.decode import generate, percentiles  # noqa: E402
from hwbench_pipeline.bench.streaming import ForeignCpu, serve_in_thread, sweep_in_child  # noqa: E402


def in_process_sweep(served, args: argparse.Namespace, count: int) -> dict:
    """``count`` threads at once, each its own Generator over the shared model, warm-ups first, then
    ``args.sequences`` sequences each through generate()."""
    ready = threading.Barrier(count + 1)
    go = threading.Barrier(count + 1)
    results: list = [None] * count

    def client(i: int) -> None:
        inputs = served.inputs(None, args.prompt, i, 1)
        generator = served.prepare(inputs, args.new_tokens)
        try:
            for _ in range(args.warmup):
                generate(generator, inputs, args.new_tokens)
            ready.wait()
            go.wait()
            results[i] = [generate(generator, inputs, args.new_tokens) for _ in range(args.sequences)]
        finally:
            generator.release()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    ready.wait()
    go.wait()
    for t in threads:
        t.join()
    sequences = [s for seqs in results for s in seqs]
    wall_s = (max(s.token_ns[-1] for s in sequences) - min(s.start_ns for s in sequences)) / 1e9
    figures = {**percentiles([s.ttft_ms for s in sequences], "ttft"),
               **percentiles([t for s in sequences for t in s.inter_token_ms], "itl")}
    figures["tokens_per_s"] = args.new_tokens * len(sequences) / wall_s
    figures["client_tokens_per_s"] = args.new_tokens / (float(np.median([s.total_ms for s in sequences])) / 1e3)
    figures["sequences"] = len(sequences)
    figures["tokens_by_client"] = [seqs[0].token_matrix()[0].tolist() for seqs in results]
    return figures


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:8.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens (default 64)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence (default 32)")
    parser.add_argument("--clients", default="1,2,4", help="comma-separated client counts (default 1,2,4)")
    parser.add_argument("--sequences", type=int, default=5, help="measured sequences per client (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up sequences per client (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, here and in the server (default 1: one core per generation)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",") if c.strip()]

    import torch

    from hwbench_pipeline.bench.served_model import load_served_model

    torch.set_num_threads(args.threads)  # the in-process threads' and the server's generations'
    served = load_served_model(args.model, args.preset, "cpu-torch")
    window = ForeignCpu()
    rows = []
    with serve_in_thread(served, max_clients=max(counts), max_new_tokens=args.new_tokens) as url:
        for count in counts:
            window.start()
            local = in_process_sweep(served, args, count)
            local["foreign_cpu_fraction"] = window.stop()
            window.start()
            streamed = sweep_in_child(url, {"prompt_len": args.prompt, "new_tokens": args.new_tokens}, [count],
                                      sequences=args.sequences, warmup=args.warmup)[count]
            streamed["foreign_cpu_fraction"] = window.stop()
            same = streamed["tokens_by_client"] == local["tokens_by_client"] and streamed["tokens_consistent"]
            rows.append({"clients": count, "in_process": local, "streamed": streamed, "tokens_equal": same,
                         "overhead_ms": {name: streamed[name] - local[name]
                                         for name in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")}})

    print(f"{args.model}/{args.preset} on cpu-torch, prompt {args.prompt}, {args.new_tokens} new tokens, "
          f"{args.sequences} sequences per client after {args.warmup} warm-up, torch threads {args.threads}, "
          f"{os.cpu_count()} CPUs; times in ms")
    header = (f"{'clients':>7} {'mode':<11} {'TTFT p50':>8} {'TTFT p99':>8} {'ITL p50':>8} {'ITL p99':>8} "
              f"{'tok/s':>8} {'tok/s/cl':>8} {'srvTTFT':>8} {'q+prep':>8} {'other CPU':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        for mode in ("in_process", "streamed"):
            f = row[mode]
            server = (fmt(f.get("server_ttft_p50_ms")), fmt(f.get("server_queue_prepare_p50_ms")))
            other = "-" if f["foreign_cpu_fraction"] is None else f"{100 * f['foreign_cpu_fraction']:8.0f}%"
            print(f"{row['clients']:>7} {mode.replace('_', '-'):<11} {fmt(f['ttft_p50_ms'])} {fmt(f['ttft_p99_ms'])} "
                  f"{fmt(f['itl_p50_ms'])} {fmt(f['itl_p99_ms'])} {fmt(f['tokens_per_s'])} "
                  f"{fmt(f['client_tokens_per_s'])} {server[0]} {server[1]} {other:>9}")
        o = row["overhead_ms"]
        print(f"{row['clients']:>7} {'overhead':<11} {fmt(o['ttft_p50_ms'])} {fmt(o['ttft_p99_ms'])} "
              f"{fmt(o['itl_p50_ms'])} {fmt(o['itl_p99_ms'])}   (streamed - in-process; tokens equal: "
              f"{'yes' if row['tokens_equal'] else 'NO'})")
    print("tok/s: all clients' tokens over the wall time; tok/s/cl: one client's, from its median sequence; "
          "srvTTFT: the server's own TTFT (prefill start to first token); q+prep: the server's queue wait and "
          "Generator preparation, before prefill; other CPU: other processes' share of all cores meanwhile")
    if args.json:
        settings = {k: getattr(args, k) for k in ("model", "preset", "prompt", "new_tokens", "sequences", "warmup",
                                                  "threads")}
        Path(args.json).write_text(json.dumps({"settings": {**settings, "clients": counts, "cpus": os.cpu_count()},
                                           "rows": rows}, indent=2))
        print(f"figures written to {args.json}")
    return 0 if all(row["tokens_equal"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
