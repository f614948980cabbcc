"""The environment every result row carries: host, CPU, memory, package versions, git revision."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

TRACKED_PACKAGES = ("torch", "transformers", "onnxruntime", "openvino", "ray", "dagster", "numpy")


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def git_revision() -> str:
    """HEAD of the checkout hwbench runs from, with '+dirty' when it has uncommitted changes."""
    repo = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


def memory_gb() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 2**30, 2)


def environment_fields() -> dict[str, object]:
    """Flat columns describing where a row was measured."""
    versions = package_versions()
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "memory_gb": memory_gb(),
        "python_version": platform.python_version(),
        "torch_version": versions.get("torch", ""),
        "transformers_version": versions.get("transformers", ""),
        "package_versions": ";".join(f"{k}={v}" for k, v in sorted(versions.items())),
        "git_revision": git_revision(),
    }
