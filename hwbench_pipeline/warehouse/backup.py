"""Backup and restore: a verified copy of the data files, and putting one back in a single swap.

``backup`` copies every data file under the exclusive warehouse lock (no writer is between its temporary
file and its rename) with a manifest of sha256 per file. The DuckDB catalog is not copied: it holds only
view definitions with absolute paths, and ``restore`` rebuilds it. ``restore`` unpacks into staging,
verifies the manifest (every file present, no extra file, every checksum), and only then swaps the
staged folder with the live one; a damaged backup is refused and the warehouse is left untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hwbench_pipeline.warehouse.format import SAFE_NAME
from hwbench_pipeline.warehouse.layout import is_compacted_file, is_run_file
from hwbench_pipeline.warehouse.maintenance_common import (
    MaintenanceError,
    Progress,
    maintenance_session,
    no_progress,
    staging_folder,
    swap_folder,
)
from hwbench_pipeline.warehouse.schema import TABLES
from hwbench_pipeline.warehouse.store import Warehouse

MANIFEST = "manifest.json"
BACKUP_FORMAT = "hwbench-warehouse-backup"
CHUNK = 1 << 20


class BackupRejected(MaintenanceError):
    """A backup that is truncated, corrupt or incomplete."""


@dataclass
class BackupReport:
    path: Path
    files: int
    bytes: int
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        extra = f"; skipped {len(self.skipped)} files outside the layout" if self.skipped else ""
        return f"backed up {self.files} files ({self.bytes / 2**20:.1f} MiB) to {self.path}{extra}"


class _HashingReader(io.RawIOBase):
    """Hashes what tarfile reads from a file."""

    def __init__(self, fh) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        return data


def _data_files(wh: Warehouse) -> tuple[list[Path], list[Path]]:
    """(files of the layout, other files) under the warehouse folder; temporary files are neither."""
    layout, other = [], []
    if not wh.parquet_dir.is_dir():
        return layout, other
    for path in sorted(p for p in wh.parquet_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(wh.parquet_dir).parts
        if path.name.endswith(".tmp"):
            continue
        in_layout = (len(rel) == 3 and rel[0] in TABLES and SAFE_NAME.match(rel[1])
                     and (is_run_file(path) or is_compacted_file(path)))
        (layout if in_layout else other).append(path)
    return layout, other


def _copy_hashing(src: Path, dest: Path) -> str:
    sha = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            sha.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return sha.hexdigest()


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


def backup(wh: Warehouse, dest: str | Path, *, progress: Progress = no_progress) -> BackupReport:
    """Copy the warehouse's data files and a sha256 manifest to ``dest`` (a .tar.gz, else a directory)."""
    dest = Path(dest).resolve()
    if dest.exists():
        raise MaintenanceError(f"{dest} already exists; give a new name for the backup")
    if not dest.parent.is_dir():
        raise MaintenanceError(f"{dest.parent} is not a directory")
    if dest.is_relative_to(wh.data_dir):
        raise MaintenanceError(f"{dest} is inside the data directory {wh.data_dir}; put backups elsewhere")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    manifest: dict = {"format": BACKUP_FORMAT, "version": 1, "created_at": datetime.now(UTC).isoformat(),
                      "source": str(wh.data_dir), "files": {}}
    total = 0
    with wh.warehouse_lock():
        files, other = _data_files(wh)
        try:
            if _is_archive(dest):
                with tarfile.open(partial, "w:gz") as tar:
                    for i, path in enumerate(files):
                        progress("backing up", i, len(files))
                        arcname = f"warehouse/{path.relative_to(wh.parquet_dir).as_posix()}"
                        info = tar.gettarinfo(str(path), arcname)
                        with open(path, "rb") as fh:
                            reader = _HashingReader(fh)
                            tar.addfile(info, reader)
                        manifest["files"][arcname] = {"sha256": reader.sha.hexdigest(), "bytes": info.size}
                        total += info.size
                    blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
                    info = tarfile.TarInfo(MANIFEST)
                    info.size, info.mtime = len(blob), int(datetime.now(UTC).timestamp())
                    tar.addfile(info, io.BytesIO(blob))
                with open(partial, "rb") as fh:
                    os.fsync(fh.fileno())
            else:
                partial.mkdir()
                for i, path in enumerate(files):
                    progress("backing up", i, len(files))
                    rel = f"warehouse/{path.relative_to(wh.parquet_dir).as_posix()}"
                    (partial / rel).parent.mkdir(parents=True, exist_ok=True)
                    manifest["files"][rel] = {"sha256": _copy_hashing(path, partial / rel),
                                              "bytes": path.stat().st_size}
                    total += path.stat().st_size
                (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.rename(partial, dest)
        finally:
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            elif partial.exists():
                partial.unlink()
    progress("backed up", len(files), len(files))
    return BackupReport(dest, len(files), total, [str(p) for p in other])


@dataclass
class RestoreReport:
    source: Path
    files: int
    bytes: int
    replaced_files: int

    def describe(self) -> str:
        return (f"restored {self.files} files ({self.bytes / 2**20:.1f} MiB) from {self.source}; "
                f"replaced {self.replaced_files} files; catalog rebuilt")


_BACKUP_MEMBER = re.compile(r"^warehouse/[A-Za-z0-9_]+/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}/[^/]+\.parquet$")


def _check_member_name(src: Path, name: str) -> None:
    if name != MANIFEST and not _BACKUP_MEMBER.match(name):
        raise BackupRejected(f"{src} holds {name!r}, which is not part of an hwbench backup; nothing restored")


def _unpack_archive(src: Path, dest: Path, progress: Progress) -> dict[str, str]:
    hashes = {}
    try:
        with tarfile.open(src, "r:gz") as tar:
            for i, member in enumerate(tar):
                progress("unpacking", i, 0)
                if member.isdir():
                    continue
                _check_member_name(src, member.name)
                if not member.isfile():
                    raise BackupRejected(f"{src}: {member.name} is not a regular file; nothing restored")
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                with tar.extractfile(member) as fin, open(target, "wb") as fout:
                    while chunk := fin.read(CHUNK):
                        sha.update(chunk)
                        fout.write(chunk)
                hashes[member.name] = sha.hexdigest()
            # tarfile stops quietly at a damaged header; reading the gzip stream to its end checks its CRC.
            while tar.fileobj.read(CHUNK):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        # gzip raises EOFError on truncation and BadGzipFile (an OSError) on damaged bytes
        raise BackupRejected(f"{src} is not a readable backup archive (truncated or corrupt: "
                             f"{str(exc) or type(exc).__name__}); nothing restored") from None
    return hashes


def _unpack_directory(src: Path, dest: Path, progress: Progress) -> dict[str, str]:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    hashes = {}
    for i, path in enumerate(files):
        progress("verifying", i, len(files))
        name = path.relative_to(src).as_posix()
        _check_member_name(src, name)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        hashes[name] = _copy_hashing(path, target)
    return hashes


def _verify_manifest(src: Path, staged: Path, hashes: dict[str, str]) -> dict:
    if MANIFEST not in hashes:
        raise BackupRejected(f"{src} has no {MANIFEST}: not an hwbench backup, or an incomplete one; nothing restored")
    try:
        manifest = json.loads((staged / MANIFEST).read_text())
        listed = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupRejected(f"{src}: {MANIFEST} is damaged ({exc}); nothing restored") from None
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupRejected(f"{src}: {MANIFEST} is not an hwbench backup manifest; nothing restored")
    present = {k: v for k, v in hashes.items() if k != MANIFEST}
    missing = sorted(set(listed) - set(present))
    if missing:
        raise BackupRejected(f"{src} is incomplete: {len(missing)} files in the manifest are missing "
                             f"(first: {missing[0]}); nothing restored")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise BackupRejected(f"{src} holds {len(extra)} files not in its manifest (first: {extra[0]}); "
                             f"nothing restored")
    damaged = sorted(name for name, sha in listed.items() if present[name] != sha)
    if damaged:
        raise BackupRejected(f"{src} is corrupt: {len(damaged)} files do not match their sha256 "
                             f"(first: {damaged[0]}); nothing restored")
    return manifest


def restore(wh: Warehouse, src: str | Path, *, progress: Progress = no_progress) -> RestoreReport:
    """Replace the warehouse with a verified backup, in one swap; the catalog is rebuilt for this location."""
    src = Path(src).resolve()
    if not src.exists():
        raise MaintenanceError(f"backup {src} does not exist")
    with maintenance_session(wh), staging_folder(wh, "restore") as staging:
        content = staging / "content"
        content.mkdir()
        unpack = _unpack_directory if src.is_dir() else _unpack_archive
        hashes = unpack(src, content, progress)
        manifest = _verify_manifest(src, content, hashes)
        new = content / "warehouse"
        new.mkdir(exist_ok=True)
        total = sum(entry["bytes"] for entry in manifest["files"].values())
        with wh.warehouse_lock():
            replaced = len(_data_files(wh)[0])
            wh.data_dir.mkdir(parents=True, exist_ok=True)
            old = swap_folder(wh, new, wh.parquet_dir)
            shutil.rmtree(old, ignore_errors=True)
            wh.refresh_catalog()
    progress("restored", len(manifest["files"]), len(manifest["files"]))
    return RestoreReport(src, len(manifest["files"]), total, replaced)
