"""The warehouse over HTTP, read-only (``hwbench serve`` runs it with uvicorn).

    GET  /tables                                                   the catalog's views
    GET  /compare?model=bert[&preset=&batch=&seq=&precision=]      targets compared on one model
    GET  /history?target=&model=&preset=&batch=&seq=[&precision=&threads=]   every run of one configuration
    GET  /coverage[?cells=true]                                    family x target matrix (or one row per cell)
    POST /sql  {"sql": "SELECT ...", "params": [...] | {...}}      one read-only statement, bound parameters

Every answer is ``{"columns", "records", "row_count", "truncated", "max_rows"}``; at most ``max_rows`` records
come back and ``truncated`` says whether more existed. Errors are ``{"detail": "<one line>"}``: 400 for a
refused or failing statement, 404 for a model/target/... without rows (the message lists those with rows),
401 for a missing or wrong bearer token, 503 when there is no warehouse.
"""

# No "from __future__ import annotations": FastAPI reads these annotations at run time, and the token
# dependency below is a local name that a string annotation could not resolve.
import hmac
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from hwbench_pipeline.warehouse.queries import (
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_SECONDS,
    NoWarehouseError,
    QueryError,
    UnknownValueError,
    WarehouseQueries,
    to_records,
)
from hwbench_pipeline.warehouse.sql_guard import RefusedStatement

Scalar = str | int | float | bool | None


class SqlRequest(BaseModel):
    sql: str = Field(max_length=100_000, description="one read-only statement; ? / $1 / $name placeholders")
    params: list[Scalar] | dict[str, Scalar] | None = Field(default=None, description="values for the placeholders")


def _error_status(exc: Exception) -> int:
    if isinstance(exc, UnknownValueError):
        return 404
    if isinstance(exc, NoWarehouseError):
        return 503
    return 400


def create_app(data_dir: str | Path, token: str | None = None, *, max_rows: int = DEFAULT_MAX_ROWS,
               max_seconds: float = DEFAULT_MAX_SECONDS) -> FastAPI:
    """The API over the warehouse in ``data_dir``; with a ``token``, every endpoint requires
    ``Authorization: Bearer <token>``."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows}")
    if token is not None and not token.strip():
        raise ValueError("the API token must not be empty")
    queries = WarehouseQueries(data_dir, max_seconds=max_seconds)
    bearer = HTTPBearer(auto_error=False, description="required when the server was started with a token")
    expected = token.encode() if token else b""

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        # compare_digest takes the same time wherever the first wrong byte is.
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="hwbench warehouse", description=__doc__, dependencies=[Depends(require_token)])

    @app.exception_handler(QueryError)
    @app.exception_handler(RefusedStatement)
    async def query_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_error_status(exc))

    def answer(frame: pl.DataFrame, truncated: bool = False) -> dict[str, Any]:
        if frame.height > max_rows:
            frame, truncated = frame.head(max_rows), True
        return {"columns": frame.columns, "records": to_records(frame), "row_count": frame.height,
                "truncated": truncated, "max_rows": max_rows}

    @app.get("/tables", summary="the catalog's views: <table> (every run) and <table>_latest")
    def tables() -> dict[str, Any]:
        return answer(queries.tables())

    @app.get("/compare", summary="every target's newest result for one model")
    def compare(model: Annotated[str, Query(description="model family, e.g. bert")],
                preset: str | None = None, batch: Annotated[int | None, Query(ge=1)] = None,
                seq: Annotated[int | None, Query(ge=1)] = None, precision: str | None = None) -> dict[str, Any]:
        return answer(queries.compare_targets(model, preset=preset, batch_size=batch, seq_len=seq,
                                              precision=precision))

    @app.get("/history", summary="every run of one configuration, oldest first")
    def history(target: str, model: str, preset: str, batch: Annotated[int, Query(ge=1)],
                seq: Annotated[int, Query(ge=1)], precision: str | None = None,
                threads: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
        return answer(queries.history(target=target, family=model, preset=preset, batch_size=batch, seq_len=seq,
                                      precision=precision, threads=threads))

    @app.get("/coverage", summary="model family x target: measured, failed:<class> or untested")
    def coverage(cells: bool = False) -> dict[str, Any]:
        return answer(queries.coverage_cells() if cells else queries.coverage())

    @app.post("/sql", summary="one read-only SQL statement with bound parameters")
    def sql(request: SqlRequest) -> dict[str, Any]:
        frame, truncated = queries.sql_capped(request.sql, request.params, max_rows=max_rows)
        return answer(frame, truncated)

    return app
