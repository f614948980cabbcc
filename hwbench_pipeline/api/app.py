"""The warehouse over HTTP, read-only (``hwbench serve`` runs it with uvicorn).

    GET  /tables                                                   the catalog's views
    GET  /compare?model=bert[&preset=&batch=&seq=&precision=]      targets compared on one model
    GET  /history?target=&model=&preset=&batch=&seq=[&precision=&threads=]   every run of one configuration
    GET  /coverage[?cells=true]                                    family x target matrix (or one row per cell)
    POST /sql  {"sql": "SELECT ...", "params": [...] | {...}}      one read-only statement, bound parameters
    GET  /docs, /redoc, /openapi.json                              this description (token required as for the rest)

Every answer is ``{"columns", "records", "row_count", "truncated", "max_rows"}``; at most ``max_rows`` records
come back, and fewer when the answer would pass the byte limit; ``truncated`` says whether rows were left out.
Errors are ``{"detail": "<one line>"}``: 400 for a refused or failing statement (a query past the memory or
time limit included) or a Host header that does not name this server, 404 for a model/target/... without rows
(the message lists those with rows), 401 for a missing or wrong bearer token, 413 for a request body over the
limit, 503 when there is no warehouse or every query slot stayed busy (with ``Retry-After``).
"""

# No "from __future__ import annotations": FastAPI reads these annotations at run time, and the token
# dependency below is a local name that a string annotation could not resolve.
import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from hwbench_pipeline.api import limits
from hwbench_pipeline.api.answers import answer_body, frame_records
from hwbench_pipeline.api.gate import QueryGate
from hwbench_pipeline.bench.serving.admission import BodyCap, HostCheck, accepted_hosts
from hwbench_pipeline.warehouse.queries import (
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_SECONDS,
    NoWarehouseError,
    QueryError,
    UnknownValueError,
    WarehouseQueries,
)
from hwbench_pipeline.warehouse.sql_guard import RefusedStatement

Scalar = str | int | float | bool | None


class SqlRequest(BaseModel):
    sql: str = Field(max_length=100_000, description="one read-only statement; ? / $1 / $name placeholders")
    params: list[Scalar] | dict[str, Scalar] | None = Field(default=None, description="values for the placeholders")


class Answer(BaseModel):
    """The shape of every successful answer (documentation only: answers are written as JSON directly)."""

    columns: list[str]
    records: list[dict[str, Any]]
    row_count: int
    truncated: bool = Field(description="rows of the result were left out (max_rows, or the byte limit)")
    max_rows: int


ANSWERED = {200: {"model": Answer, "description": "rows of the result"}}


def _error_status(exc: Exception) -> int:
    if isinstance(exc, UnknownValueError):
        return 404
    if isinstance(exc, NoWarehouseError):
        return 503
    return 400


def create_app(data_dir: str | Path, token: str | None = None, *, max_rows: int = DEFAULT_MAX_ROWS,
               max_seconds: float = DEFAULT_MAX_SECONDS, memory_limit: str = limits.QUERY_MEMORY_LIMIT,
               threads: int = limits.QUERY_THREADS, max_concurrent_queries: int = limits.MAX_CONCURRENT_QUERIES,
               queue_seconds: float = limits.QUEUE_SECONDS, max_response_bytes: int = limits.MAX_RESPONSE_BYTES,
               max_body_bytes: int = limits.MAX_BODY_BYTES, allowed_hosts: Iterable[str] = ()) -> FastAPI:
    """The API over the warehouse in ``data_dir``; with a ``token``, every endpoint (the docs included) requires
    ``Authorization: Bearer <token>``.

    Each query runs on its own DuckDB instance limited to ``memory_limit`` and ``threads``, for at most
    ``max_seconds``, and at most ``max_concurrent_queries`` run at once (a request beyond waits up to
    ``queue_seconds``, then gets 503). Answers hold at most ``max_rows`` records and ``max_response_bytes``
    bytes; request bodies over ``max_body_bytes`` get 413. The Host header must be 127.0.0.1, localhost,
    [::1] or one of ``allowed_hosts`` (any port). A bad setting raises ValueError."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows}")
    if max_response_bytes < 1024:
        raise ValueError(f"the answer size limit must be at least 1024 bytes, got {max_response_bytes}")
    if max_body_bytes < 0:
        raise ValueError(f"the request body limit must be >= 0 bytes, got {max_body_bytes}")
    if token is not None and not token.strip():
        raise ValueError("the API token must not be empty")
    # Checked now: Starlette builds the middleware only on the first request.
    hosts = accepted_hosts(allowed_hosts)
    queries = WarehouseQueries(data_dir, max_seconds=max_seconds, memory_limit=memory_limit, threads=threads)
    gate = QueryGate(max_concurrent_queries, queue_seconds)
    bearer = HTTPBearer(auto_error=False, description="required when the server was started with a token")
    expected = token.encode() if token else b""

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        # compare_digest takes the same time wherever the first wrong byte is.
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # The built-in docs routes would be served without the token: they are replaced by routes below that
    # carry it like every other.
    app = FastAPI(title="hwbench warehouse", description=__doc__, dependencies=[Depends(require_token)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    # The last added runs first: a foreign Host is refused before anything else is looked at.
    app.add_middleware(BodyCap, max_bytes=max_body_bytes)
    app.add_middleware(HostCheck, allowed=hosts)

    @app.exception_handler(QueryError)
    @app.exception_handler(RefusedStatement)
    async def query_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_error_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One line, like every other error; FastAPI's own answer echoes the input, which fails on a body that
        # is not UTF-8 (a 500).
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                             for e in exc.errors()[:5])
        return JSONResponse({"detail": " ".join(f"invalid request: {problems}".split())[:500]}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # One line to the client; Starlette raises the exception on after this answer, and uvicorn logs its
        # traceback.
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server log has the details"},
                            status_code=500)

    def answer(columns: list[str], records: list[str], truncated: bool) -> Response:
        body = answer_body(columns, records, truncated, max_rows=max_rows, max_bytes=max_response_bytes)
        return Response(body, media_type="application/json")

    def frame_answer(frame: pl.DataFrame) -> Response:
        truncated = frame.height > max_rows
        frame = frame.head(max_rows)
        return answer(frame.columns, frame_records(frame), truncated)

    @app.get("/tables", summary="the catalog's views: <table> (every run) and <table>_latest", responses=ANSWERED)
    def tables() -> Response:
        with gate.slot():
            return frame_answer(queries.tables())

    @app.get("/compare", summary="every target's newest result for one model", responses=ANSWERED)
    def compare(model: Annotated[str, Query(description="model family, e.g. bert")],
                preset: str | None = None, batch: Annotated[int | None, Query(ge=1)] = None,
                seq: Annotated[int | None, Query(ge=1)] = None, precision: str | None = None) -> Response:
        with gate.slot():
            return frame_answer(queries.compare_targets(model, preset=preset, batch_size=batch, seq_len=seq,
                                                        precision=precision))

    @app.get("/history", summary="every run of one configuration, oldest first", responses=ANSWERED)
    def history(target: str, model: str, preset: str, batch: Annotated[int, Query(ge=1)],
                seq: Annotated[int, Query(ge=1)], precision: str | None = None,
                threads: Annotated[int | None, Query(ge=1)] = None) -> Response:
        with gate.slot():
            return frame_answer(queries.history(target=target, family=model, preset=preset, batch_size=batch,
                                                seq_len=seq, precision=precision, threads=threads))

    @app.get("/coverage", summary="model family x target: measured, failed:<class> or untested", responses=ANSWERED)
    def coverage(cells: bool = False) -> Response:
        with gate.slot():
            return frame_answer(queries.coverage_cells() if cells else queries.coverage())

    @app.post("/sql", summary="one read-only SQL statement with bound parameters", responses=ANSWERED)
    def sql(request: SqlRequest) -> Response:
        with gate.slot():
            # Rows stop being fetched once their text alone passes the byte limit.
            rows = queries.sql_json(request.sql, request.params, max_rows=max_rows, max_bytes=max_response_bytes)
            return answer(rows.columns, rows.records, rows.truncated)

    # async: served on the event loop, so the docs answer even while every worker thread waits for a slot
    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    return app
