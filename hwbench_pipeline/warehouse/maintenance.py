"""Keeping the warehouse small, bounded, recoverable and verified: compact, retain, backup, restore, check.

This module is the public facade of the maintenance operations; it re-exports them (and the errors and names
their callers use) from the modules that hold them, each documented there:

* ``warehouse/compaction.py`` — :func:`compact`: merging a partition's small files, swapped in atomically;
* ``warehouse/retention.py`` — :func:`retain`: removing old runs, never the newest row of a key;
* ``warehouse/backup.py`` — :func:`backup` and :func:`restore`, which share the manifest format;
* ``warehouse/check.py`` — :func:`check`: reading everything and reporting what is wrong, and :func:`repair`:
  setting damaged files aside so that the rest of their table reads again;
* ``warehouse/layout.py`` — the partition folders, run files and compacted files they all work on;
* ``warehouse/maintenance_common.py`` — what they share: :class:`MaintenanceError`, progress callbacks, the
  one-at-a-time session that recovers first, and the staging folder :data:`STAGING_DIR`.
"""

from hwbench_pipeline.warehouse.backup import BackupRejected, backup, restore
from hwbench_pipeline.warehouse.check import check, repair
from hwbench_pipeline.warehouse.compaction import compact
from hwbench_pipeline.warehouse.layout import read_segments
from hwbench_pipeline.warehouse.maintenance_common import STAGING_DIR, MaintenanceError
from hwbench_pipeline.warehouse.retention import retain

__all__ = ["STAGING_DIR", "BackupRejected", "MaintenanceError", "backup", "check", "compact", "read_segments",
           "repair", "restore", "retain"]
