"""Greedy generation streamed over a WebSocket, token by token as each is generated (``hwbench serve-generate``
runs it with uvicorn; docs/streaming.md has the protocol).

    WS   /generate   one request per connection: {"prompt": [ids] | "prompt_len": N, "seed": S, "new_tokens": K,
                     "batch": B}; then {"index", "token", "server_ms"} per step, then {"done": true, ...}
    GET  /stats      the server's counters: model steps run, generations by outcome, running and waiting now

At most ``max_clients`` generate at once, each in its own worker thread (generate_session.py); up to
``max_waiting`` more wait for a slot (``queue_seconds`` at most), and any beyond are refused with class ``busy``.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time.
import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from hwbench_pipeline.bench.served_model import ServedModel
from hwbench_pipeline.bench.serving.admission import HostCheck, accepted_hosts
from hwbench_pipeline.bench.serving.handshake import bearer_matches, handshake_refusal, refuse_handshake
from hwbench_pipeline.bench.serving.protocol import CLOSE_POLICY, RequestError, parse_request
from hwbench_pipeline.bench.serving.session import GenerateServer, Session
from hwbench_pipeline.bench.serving.stream import StreamStats

#: defaults of ``hwbench serve-generate``
MAX_CLIENTS = 4
MAX_WAITING = 16
QUEUE_SECONDS = 30.0
MAX_NEW_TOKENS = 256
MAX_BATCH = 64
#: how long a connected client has to send its request
REQUEST_SECONDS = 10.0
#: the largest message accepted (uvicorn closes the socket with 1009 past it): a prompt of the longest context
#: as JSON numbers is well under it
MAX_MESSAGE_BYTES = 1024 * 1024


def check_settings(token: str | None, *, max_clients: int, max_waiting: int, queue_seconds: float,
                   max_new_tokens: int, max_batch: int, request_seconds: float) -> None:
    """ValueError for a setting of :func:`create_generate_app` that cannot work."""
    for name, value in (("max_clients", max_clients), ("max_new_tokens", max_new_tokens),
                        ("max_batch", max_batch)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if max_waiting < 0 or queue_seconds < 0 or request_seconds <= 0:
        raise ValueError("max_waiting and queue_seconds must be >= 0, request_seconds > 0")
    if token is not None and not token.strip():
        raise ValueError("the API token must not be empty")


def create_generate_app(served: ServedModel, token: str | None = None, *, max_clients: int = MAX_CLIENTS,
                        max_waiting: int = MAX_WAITING, queue_seconds: float = QUEUE_SECONDS,
                        max_new_tokens: int = MAX_NEW_TOKENS, max_batch: int = MAX_BATCH,
                        request_seconds: float = REQUEST_SECONDS, allowed_hosts: Iterable[str] = ()) -> FastAPI:
    """The streaming app over ``served``. With a ``token``, /generate and /stats require ``Authorization: Bearer
    <token>`` (a WebSocket without it is answered 401 before it opens). The Host header, and the Origin header a
    browser sends, must name 127.0.0.1, localhost, [::1] or one of ``allowed_hosts``. A bad setting raises
    ValueError."""
    check_settings(token, max_clients=max_clients, max_waiting=max_waiting, queue_seconds=queue_seconds,
                   max_new_tokens=max_new_tokens, max_batch=max_batch, request_seconds=request_seconds)
    hosts = accepted_hosts(allowed_hosts)
    stats = StreamStats()
    server = GenerateServer(
        served, stats,
        # a bounded semaphore: a release without an acquire (a bug) raises instead of adding a slot
        slots=asyncio.BoundedSemaphore(max_clients),
        # one worker thread per slot: a generation never waits for a thread once it holds a slot
        executor=ThreadPoolExecutor(max_workers=max_clients, thread_name_prefix="generate"),
        max_clients=max_clients, max_waiting=max_waiting, queue_seconds=queue_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for progress in list(server.active):  # shutting down: running generations stop at their next step
            progress.stop()
        server.executor.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(title="hwbench streaming generation", description=__doc__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.add_middleware(HostCheck, allowed=hosts)  # HTTP only; the WebSocket handshake is checked below
    app.state.stats = stats
    app.state.served = served

    @app.get("/stats")
    async def read_stats(request: Request) -> JSONResponse:
        if not bearer_matches(request.headers.get("authorization"), token):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse({"model": served.label, "max_clients": max_clients, "max_waiting": max_waiting,
                             **stats.snapshot()})

    @app.websocket("/generate")
    async def generate_endpoint(websocket: WebSocket) -> None:
        refusal = handshake_refusal(websocket.headers, hosts, token)
        if refusal is not None:
            stats.add(refused=1)
            await refuse_handshake(websocket, *refusal)
            return
        await websocket.accept()
        session = Session(websocket, server)
        try:
            text = await asyncio.wait_for(session.receive(), request_seconds)
        except TimeoutError:
            await session.fail("timeout", f"no request within {request_seconds:g} s", CLOSE_POLICY)
            return
        if text is None:
            return
        try:
            request = parse_request(text, served, max_new_tokens=max_new_tokens, max_batch=max_batch)
        except RequestError as exc:
            stats.add(refused=1)
            await session.fail(exc.error_class, str(exc), CLOSE_POLICY)
            return
        await session.serve(request)

    return app
