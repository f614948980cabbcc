"""``hwbench serve``: the read-only REST API (hwbench_pipeline/api/app.py) under uvicorn.

Binds to 127.0.0.1 unless told otherwise, and refuses any other address without a token, so the warehouse
is never readable from the network by accident. Requests must name this server in their Host header (the
loopback names, the bound address, and each --allowed-host), which keeps out a web page that points its own
DNS name at 127.0.0.1. Each query runs with a memory limit and a thread count, a few at a time.
"""

from __future__ import annotations

import argparse
import ipaddress
import os

from hwbench_pipeline.api import limits
from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import non_negative_float, positive_int, timeout_seconds
from hwbench_pipeline.paths import default_data_dir

TOKEN_VARIABLE = "HWBENCH_API_TOKEN"
# The server's defaults (hwbench_pipeline/api/limits.py imports nothing: the API loads only when it starts)
MAX_ROWS, MAX_SECONDS = limits.MAX_ROWS, limits.MAX_SECONDS
QUERY_MEMORY_LIMIT, QUERY_THREADS = limits.QUERY_MEMORY_LIMIT, limits.QUERY_THREADS
MAX_CONCURRENT_QUERIES, QUEUE_SECONDS = limits.MAX_CONCURRENT_QUERIES, limits.QUEUE_SECONDS
MAX_RESPONSE_BYTES, MAX_BODY_BYTES = limits.MAX_RESPONSE_BYTES, limits.MAX_BODY_BYTES


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine. Names other than localhost count as
    not loopback: what they resolve to can change."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_host_names(bind_host: str, allowed: list[str] | None) -> list[str]:
    """The names accepted in the Host header besides the loopback ones: the address the server binds to
    (unless it is 0.0.0.0 or ::, which name no one host) and each ``--allowed-host``."""
    try:
        every_address = ipaddress.ip_address(bind_host.strip("[]")).is_unspecified
    except ValueError:
        every_address = False
    return ([] if every_address else [bind_host]) + list(allowed or [])


def server_token(args: argparse.Namespace, exposed: str) -> str | None:
    """The token a server started with ``args`` requires (--token, else $HWBENCH_API_TOKEN, else none); refuses
    an empty one, and any address but a loopback one without a token (anyone who can reach it could ``exposed``)."""
    token = args.token if args.token is not None else (os.environ.get(TOKEN_VARIABLE) or None)
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty")
    if not is_loopback(args.host) and token is None:
        raise UsageError(f"refusing to serve on {args.host} without a token: anyone who can reach it could "
                         f"{exposed}; set {TOKEN_VARIABLE} (or --token), or bind to 127.0.0.1")
    return token


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hwbench_pipeline.api.app import create_app
    from hwbench_pipeline.warehouse.queries import QueryError, WarehouseQueries

    token = server_token(args, "read the warehouse")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    data_dir = args.data_dir or default_data_dir()
    try:
        WarehouseQueries(data_dir).tables()  # fail now, not on the first request
    except QueryError as exc:
        raise UsageError(str(exc)) from None
    try:
        app = create_app(data_dir, token, max_rows=args.max_rows, max_seconds=args.max_seconds,
                         memory_limit=args.query_memory_limit, threads=args.query_threads,
                         max_concurrent_queries=args.max_concurrent_queries, queue_seconds=args.queue_seconds,
                         max_response_bytes=args.max_response_bytes, max_body_bytes=args.max_body_bytes,
                         allowed_hosts=served_host_names(args.host, args.allowed_host))
    except ValueError as exc:  # a memory limit or an --allowed-host that is not one
        raise UsageError(str(exc)) from None
    make_console().print(f"serving {os.path.abspath(data_dir)} read-only on http://{args.host}:{args.port} "
                     f"({'bearer token required' if token else 'no token: this machine only'}); each query: "
                     f"{args.query_memory_limit}, {args.query_threads} thread(s), {args.max_concurrent_queries} "
                     "at once; Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the warehouse read-only over HTTP (JSON)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument("--token", default=None,
                       help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_VARIABLE}; prefer the variable, "
                            "a command line is visible to other users)")
    serve.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    serve.add_argument("--max-rows", type=positive_int, default=MAX_ROWS,
                       help=f"records per answer at most (default {MAX_ROWS}); 'truncated' says when cut")
    serve.add_argument("--max-seconds", type=timeout_seconds, default=MAX_SECONDS,
                       help=f"stop a query after this long (default {MAX_SECONDS:g})")
    serve.add_argument("--query-memory-limit", default=QUERY_MEMORY_LIMIT, metavar="SIZE",
                       help=f"DuckDB memory per query, e.g. 512MB or 2GiB (default {QUERY_MEMORY_LIMIT}); a query "
                            "that needs more is answered 400")
    serve.add_argument("--query-threads", type=positive_int, default=QUERY_THREADS,
                       help=f"DuckDB threads per query (default {QUERY_THREADS})")
    serve.add_argument("--max-concurrent-queries", type=positive_int, default=MAX_CONCURRENT_QUERIES,
                       help=f"queries run at once (default {MAX_CONCURRENT_QUERIES}); others wait for a slot")
    serve.add_argument("--queue-seconds", type=non_negative_float, default=QUEUE_SECONDS,
                       help=f"how long a request waits for a query slot before 503 with Retry-After "
                            f"(default {QUEUE_SECONDS:g})")
    serve.add_argument("--max-response-bytes", type=positive_int, default=MAX_RESPONSE_BYTES,
                       help=f"answer size at most (default {MAX_RESPONSE_BYTES}); records past it are left out "
                            "and 'truncated' says so")
    serve.add_argument("--max-body-bytes", type=positive_int, default=MAX_BODY_BYTES,
                       help=f"request body size at most (default {MAX_BODY_BYTES}); larger is answered 413")
    serve.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="also accept NAME in the Host header (repeatable; any port): the name clients use to "
                            "reach the server; 127.0.0.1, localhost, [::1] and the --host address always are")
    serve.set_defaults(func=_serve)
