"""The warehouse as a Dagster resource: the data directory, and read-only DuckDB connections to its catalog.

Writers go through :class:`~hwbench_pipeline.warehouse.store.Warehouse` (atomic Parquet files, locks,
transactions); the DuckDB file holds only views over those files, so readers need nothing more than a read-only
connection, which dagster-duckdb's ``DuckDBResource`` opens with the DuckDB settings configured here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from hwbench_pipeline.paths import default_data_dir
from hwbench_pipeline.warehouse.store import Warehouse

#: readers never change the catalog: its views are rebuilt by writers, under another name, and renamed into place
READ_ONLY = "READ_ONLY"


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse in ``data_dir`` (``HWBENCH_DATA_DIR``, else data/ in the checkout).

    ``warehouse()`` is the store that writes and reads Parquet files; ``get_connection()`` is a read-only DuckDB
    connection to the catalog of views, with ``memory_limit``, ``threads`` and ``connection_config`` applied.
    """

    data_dir: str = Field(default=default_data_dir(),
                          description="The data directory: warehouse/ (Parquet), hwbench.duckdb (views), reports/, "
                                      "predictor/. Defaults to HWBENCH_DATA_DIR, else data/ in the checkout.")
    memory_limit: str = Field(default="", description="DuckDB memory_limit of reader connections, e.g. '2GB'; "
                                                      "empty: DuckDB's default (80 % of the host's memory).")
    threads: int = Field(default=0, description="DuckDB threads of reader connections; 0: DuckDB's default "
                                                "(one per core).")
    connection_config: dict[str, Any] = Field(
        default={}, description="Further DuckDB settings of reader connections "
                                "(https://duckdb.org/docs/stable/configuration/overview); access_mode is always "
                                "READ_ONLY.")

    def warehouse(self) -> Warehouse:
        """The store: every write goes through it, and so may reads that want polars frames."""
        return Warehouse(self.data_dir)

    @property
    def data_path(self) -> Path:
        """The data directory, absolute."""
        return Path(self.data_dir).resolve()

    @property
    def reports_dir(self) -> Path:
        return self.data_path / "reports"

    @property
    def predictor_dir(self) -> Path:
        return self.data_path / "predictor"

    @property
    def profiles_dir(self) -> Path:
        """Where sensors write the profiles they derive for a run (a run loads them by path)."""
        return self.data_path / "profiles"

    def reader_config(self) -> dict[str, Any]:
        """The DuckDB settings of a connection from ``get_connection()``."""
        mode = str(self.connection_config.get("access_mode", READ_ONLY))
        if mode.upper() != READ_ONLY:
            raise ValueError(f"connection_config access_mode {mode!r}: the catalog is opened {READ_ONLY} only "
                             "(write through Warehouse)")
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: give a positive number, or 0 for DuckDB's default")
        config = {**self.connection_config, "access_mode": READ_ONLY}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = self.threads
        return config

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the catalog, rebuilt first when it does not match the Parquet folders.

        One DuckDB instance serves a file per process, so while this connection is open the process cannot open
        the catalog with other settings (``Warehouse.connect``, the check that ``Warehouse.write`` runs): read
        inside the block, write after it.
        """
        catalog = self.warehouse().ensure_catalog()
        # DuckDBResource retries the open on lock errors (a process holding the file read-write, for a while)
        duckdb_resource = DuckDBResource(database=str(catalog), connection_config=self.reader_config())
        with duckdb_resource.get_connection() as connection:
            try:
                yield connection
            finally:
                # DuckDBResource closes it only when the block succeeds; left open after an error, it would hold
                # the catalog with these settings for as long as the traceback lives
                connection.close()
