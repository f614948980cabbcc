"""The warehouse's on-disk names and errors, shared by the store, the folder layout and maintenance."""

from __future__ import annotations

import re

import pyarrow as pa

#: ``\Z``, not ``$``: ``$`` also matches before a final newline, and "cpu-torch\n" is no plain name
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
META_COLUMNS = [("_partition", pa.string()), ("_written_at", pa.timestamp("us", tz="UTC"))]
#: compacted files start with this; run ids cannot (they start with a letter or digit), so names never clash
COMPACTED_PREFIX = "_compacted-"
#: page checksums let a reader (and ``hwbench db check``) tell a damaged data page from a valid one
PARQUET_WRITE_OPTIONS = {"write_page_checksum": True}


class WarehouseError(ValueError):
    pass


class MaintenanceError(WarehouseError):
    """A maintenance step refused to run; the message says why and the warehouse is unchanged."""
