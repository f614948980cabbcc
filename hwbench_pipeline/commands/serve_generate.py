"""``hwbench serve-generate``: one generative model behind a WebSocket that streams each token as it is generated
(hwbench_pipeline/bench/serving/app.py; protocol and limits in docs/streaming.md).

Binds to 127.0.0.1 unless told otherwise and refuses any other address without a token, as ``hwbench serve``
does, with the same token variable and the same Host-header rule.
"""

from __future__ import annotations

import argparse

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import non_negative_float, non_negative_int, port_number, positive_int
from hwbench_pipeline.commands.serve import TOKEN_VARIABLE, served_host_names, server_token

# the app's defaults, repeated here so that --help does not import FastAPI and torch (checked equal in the tests)
MAX_CLIENTS, MAX_WAITING, QUEUE_SECONDS, MAX_NEW_TOKENS, MAX_BATCH = 4, 16, 30.0, 256, 64
DEFAULT_PORT = 8766


def _serve_generate(args: argparse.Namespace) -> int:
    # What can be refused without torch is refused first, in milliseconds.
    token = server_token(args, "use the model")
    from hwbench_pipeline.bench.families import UnknownModelError
    from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target

    try:
        parse_target(args.target)
    except UnknownTargetError as exc:
        raise UsageError(str(exc)) from None

    import uvicorn

    from hwbench_pipeline.bench.failures import BenchmarkFailure
    from hwbench_pipeline.bench.served_model import load_served_model
    from hwbench_pipeline.bench.serving.app import MAX_MESSAGE_BYTES, create_generate_app

    console = make_console()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    console.print(f"loading {args.model}/{args.preset} on {args.target} ...")
    try:
        served = load_served_model(args.model, args.preset, args.target, seed=args.seed)
        app = create_generate_app(served, token, max_clients=args.max_clients, max_waiting=args.max_waiting,
                                  queue_seconds=args.queue_seconds, max_new_tokens=args.max_new_tokens,
                                  max_batch=args.max_batch,
                                  allowed_hosts=served_host_names(args.host, args.allowed_host))
    except (UnknownModelError, BenchmarkFailure, ValueError) as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    console.print(f"streaming {served.label} on ws://{args.host}:{args.port}/generate "
                  f"({'bearer token required' if token else 'no token: this machine only'}); {args.max_clients} "
                  f"generation(s) at once, {args.max_waiting} waiting at most, up to {args.max_new_tokens} new "
                  f"tokens; Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, ws_max_size=MAX_MESSAGE_BYTES)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve-generate", help="stream greedy generation token by token over a WebSocket")
    p.add_argument("--model", required=True, help="a generative model family (llama, qwen2, gpt2, t5, ...)")
    p.add_argument("--preset", default="small", help="size preset (default small)")
    p.add_argument("--target", default="cpu-torch", help="hardware target, a torch one for now (default cpu-torch)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the random weights' seed (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on the WebSocket handshake (default: "
                        f"${TOKEN_VARIABLE}; prefer the variable, a command line is visible to other users)")
    p.add_argument("--max-clients", type=positive_int, default=MAX_CLIENTS,
                   help=f"generations at once, each with its own KV cache (default {MAX_CLIENTS})")
    p.add_argument("--max-waiting", type=non_negative_int, default=MAX_WAITING,
                   help=f"clients waiting for a generation slot at most; more are refused 'busy' at once "
                        f"(default {MAX_WAITING})")
    p.add_argument("--queue-seconds", type=non_negative_float, default=QUEUE_SECONDS,
                   help=f"how long a client waits for a slot before 'busy' (default {QUEUE_SECONDS:g})")
    p.add_argument("--max-new-tokens", type=positive_int, default=MAX_NEW_TOKENS,
                   help=f"new tokens per request at most (default {MAX_NEW_TOKENS})")
    p.add_argument("--max-batch", type=positive_int, default=MAX_BATCH,
                   help=f"sequences per request at most (default {MAX_BATCH}); a batch under it that does not fit "
                        "in memory is answered out_of_memory")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads, shared by the generations (default: torch's, all cores)")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="also accept NAME in the Host and Origin headers (repeatable); 127.0.0.1, localhost, [::1] "
                        "and the --host address always are")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    p.set_defaults(func=_serve_generate)
