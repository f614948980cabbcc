"""``hwbench serve``: the read-only REST API (hwbench_pipeline/api/app.py) under uvicorn.

Binds to 127.0.0.1 unless told otherwise, and refuses any other address without a token, so the warehouse
is never readable from the network by accident.
"""

from __future__ import annotations

import argparse
import ipaddress
import os

from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.paths import default_data_dir

TOKEN_VARIABLE = "HWBENCH_API_TOKEN"
# The server's defaults; the API and query layer (~1.5 s of imports) load only when it starts.
MAX_ROWS = 1000
MAX_SECONDS = 30.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine. Names other than localhost count as
    not loopback: what they resolve to can change."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hwbench_pipeline.api.app import create_app
    from hwbench_pipeline.warehouse.queries import QueryError, WarehouseQueries

    token = args.token if args.token is not None else (os.environ.get(TOKEN_VARIABLE) or None)
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty")
    if not is_loopback(args.host) and token is None:
        raise UsageError(f"refusing to serve on {args.host} without a token: anyone who can reach it could read "
                         f"the warehouse; set {TOKEN_VARIABLE} (or --token), or bind to 127.0.0.1")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_rows < 1 or args.max_seconds <= 0:
        raise UsageError("--max-rows and --max-seconds must be positive")
    data_dir = args.data_dir or default_data_dir()
    try:
        WarehouseQueries(data_dir).tables()  # fail now, not on the first request
    except QueryError as exc:
        raise UsageError(str(exc)) from None
    app = create_app(data_dir, token, max_rows=args.max_rows, max_seconds=args.max_seconds)
    make_console().print(f"serving {os.path.abspath(data_dir)} read-only on http://{args.host}:{args.port} "
                     f"({'bearer token required' if token else 'no token: this machine only'}); Ctrl-C stops")
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
    serve.add_argument("--max-rows", type=int, default=MAX_ROWS,
                       help=f"records per answer at most (default {MAX_ROWS}); 'truncated' says when cut")
    serve.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                       help=f"stop a query after this long (default {MAX_SECONDS:g})")
    serve.set_defaults(func=_serve)
