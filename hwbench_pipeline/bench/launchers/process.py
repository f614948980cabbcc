"""The process launcher: each configuration in a fresh local process forked from a preloaded server, no Ray.

A fork server is started once per hwbench process and imports torch, transformers and the engine
(:mod:`hwbench_pipeline.bench.worker_preload`). Each configuration then runs in a new process forked from
that server, which exits after it: as fresh as a Ray worker with ``max_calls=1`` (its own address space, its
own RSS high-water mark and thread pools, nothing a previous configuration loaded), but started in
milliseconds instead of seconds of imports. The server itself never runs a torch operation and never
touches CUDA: forking a process that has started OpenMP threads or a CUDA context is not safe, and the
children start both themselves.

Only this host is reachable this way; a Ray cluster (``RAY_ADDRESS``) is dispatched to through Ray. As with
any multiprocessing start method other than fork, each child imports the caller's ``__main__`` module again:
a script that dispatches this way keeps its work under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

from hwbench_pipeline.bench.backends.export_cache import EXPORT_CACHE_ENV
from hwbench_pipeline.bench.host_lock import MEASURING_LOCK_ENV, hold_measuring_lock, measuring_lock_env
from hwbench_pipeline.bench.launchers.base import FailureFunction, MeasureFunction
from hwbench_pipeline.bench.trackers.oom import MemoryCgroup, oom_kill_counts, oom_kills_since

PRELOAD_MODULES = ["hwbench_pipeline.bench.worker_preload"]


class WorkerTimeout(Exception):
    """The configuration's process produced no result within the time limit; it has been killed."""


class WorkerOutOfMemory(Exception):
    """The configuration's process grew past its memory limit; it has been killed before it took the host's."""


class WorkerCrashed(Exception):
    """The configuration's process ended without sending a result (killed by a signal, os._exit, ...)."""


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD_MODULES)
    return ctx


def start_server() -> None:
    """Start the fork server now, so its imports overlap with the caller's own start-up work."""
    _context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _wait_then_exit(owner_pid: int) -> None:
    try:
        import select

        fd = os.pidfd_open(owner_pid)
        select.select([fd], [], [])  # readable once the owner has exited
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): look once a second
        while True:
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(1.0)
    os._exit(1)


def _die_with_owner(owner_pid: int) -> None:
    """End this measuring process as soon as the process that asked for it is gone (a Ray worker cancelled at a
    timeout, a killed CLI): its parent is the fork server, which outlives its owner while any of its children
    runs, so the parent's death cannot be the signal. A daemon thread blocks on the owner's pidfd meanwhile."""
    import threading

    threading.Thread(target=_wait_then_exit, args=(owner_pid,), name="hwbench-owner-watch", daemon=True).start()


def _child_main(conn: multiprocessing.connection.Connection, measure: Callable[[Any, str], dict],
                cfg: Any, run_id: str, scratch: str, env: dict[str, str], owner_pid: int,
                cgroup: MemoryCgroup | None) -> None:
    if cgroup is not None:
        cgroup.join()  # before anything is allocated: the kernel enforces the limit from here on
    for name in (EXPORT_CACHE_ENV, MEASURING_LOCK_ENV):  # the server's own may be a previous caller's
        if name not in env:
            os.environ.pop(name, None)
    os.environ.update(env)
    hold_measuring_lock()  # first: an owner that is already gone then ends this process before it measures
    _die_with_owner(owner_pid)
    tempfile.tempdir = scratch  # everything the measurement writes to temporary files goes to the parent's dir
    row = measure(cfg, run_id)
    conn.send(row)
    conn.close()


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def _wait_for_result(receiver: multiprocessing.connection.Connection, proc: Any, timeout_s: float,
                     memory_limit_mb: float | None) -> None:
    """Wait until a result is ready; kill the process at the timeout or when its RSS grows past
    ``memory_limit_mb`` (where no cgroup enforces the limit)."""
    t0 = time.monotonic()
    while True:
        left = timeout_s - (time.monotonic() - t0)
        if left <= 0:
            proc.kill()  # now, not after the grace period a finished child gets below
            raise WorkerTimeout(f"no result after {time.monotonic() - t0:.0f} s (limit {timeout_s:.0f} s)")
        if receiver.poll(min(left, 0.25) if memory_limit_mb else left):
            return
        if memory_limit_mb and (rss := _rss_mb(proc.pid)) > memory_limit_mb:
            proc.kill()
            raise WorkerOutOfMemory(f"the measuring process grew to {rss:.0f} MiB, past its limit of "
                                    f"{memory_limit_mb:.0f} MiB, and was killed")


def measure_in_fresh_process(measure: Callable[[Any, str], dict], cfg: Any, run_id: str,
                             timeout_s: float, memory_limit_mb: float | None = None,
                             env: dict[str, str] | None = None) -> dict:
    """``measure(cfg, run_id)`` in a new process forked from the preloaded server; returns its row.

    Raises :class:`WorkerTimeout` when no row arrives within ``timeout_s`` (the process is killed),
    :class:`WorkerOutOfMemory` when it grows past ``memory_limit_mb`` (enforced by a memory cgroup where this
    process can create one, else by polling its RSS) or when the kernel's out-of-memory killer killed it
    (bench/trackers/oom.py), and :class:`WorkerCrashed` when the process ends without a row otherwise. The
    process's temporary files (exported models, compiled caches) live in a directory this call removes once the
    process is gone, killed or not. ``env`` is set in the process's environment before it measures.
    """
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    scratch = tempfile.mkdtemp(prefix="hwbench-measure-")
    env = {**measuring_lock_env(), **(env or {})}
    cgroup = MemoryCgroup.create(memory_limit_mb) if memory_limit_mb else None
    oom_before = oom_kill_counts()
    proc = ctx.Process(target=_child_main, args=(sender, measure, cfg, run_id, scratch, env, os.getpid(), cgroup),
                       name="hwbench-measure", daemon=True)
    proc.start()
    sender.close()  # the child holds the only writer: its exit shows up here as end of file
    try:
        _wait_for_result(receiver, proc, timeout_s, None if cgroup else memory_limit_mb)
        try:
            return receiver.recv()
        except EOFError:
            proc.join(10)
            _raise_if_out_of_memory(proc, cgroup, oom_before)
            raise WorkerCrashed(f"the measuring process (pid {proc.pid}) {_exit_description(proc.exitcode)} "
                                "before sending a result") from None
    finally:
        receiver.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(scratch, ignore_errors=True)


def _raise_if_out_of_memory(proc: Any, cgroup: MemoryCgroup | None, oom_before: dict[str, int]) -> None:
    """WorkerOutOfMemory when the kernel's out-of-memory killer is what ended ``proc`` (a SIGKILL alone does not
    say why)."""
    if proc.exitcode != -signal.SIGKILL:
        return
    if cgroup is not None and cgroup.oom_kills():
        raise WorkerOutOfMemory(f"the kernel killed the measuring process at its memory limit of "
                                f"{cgroup.limit_mb:.0f} MiB (oom_kill in {cgroup.path})")
    if (why := oom_kills_since(oom_before)) is not None:
        raise WorkerOutOfMemory(f"the kernel's out-of-memory killer killed the measuring process ({why})")


def measured_row(measure: MeasureFunction, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                 env: dict[str, str] | None = None, memory_limit_mb: float | None = None) -> dict:
    """``measure(cfg, run_id)``'s row from a fresh process; a timeout, a process out of memory or a dead process
    becomes ``failure``'s row."""
    try:
        return measure_in_fresh_process(measure, cfg, run_id, timeout_s, memory_limit_mb, env=env)
    except WorkerTimeout as exc:
        return failure(cfg, run_id, "timeout", str(exc))
    except WorkerOutOfMemory as exc:
        return failure(cfg, run_id, "out_of_memory", str(exc))
    except WorkerCrashed as exc:
        return failure(cfg, run_id, "worker_crashed", str(exc))


def workspace_env(cache_root: str | None, workspace: str | None) -> dict[str, str]:
    """The environment that gives a measuring process the host's measuring lock (bench/host_lock.py) and its
    configuration's export cache (shared by the processes that measure one configuration: the first exports,
    the others load), where the launcher keeps one."""
    if not cache_root or not workspace:
        return measuring_lock_env()
    directory = workspace_dir(cache_root, workspace)
    os.makedirs(directory, exist_ok=True)
    return {**measuring_lock_env(), EXPORT_CACHE_ENV: directory}


def workspace_dir(cache_root: str, workspace: str) -> str:
    """The directory of one configuration's export cache under the launcher's cache root."""
    return os.path.join(cache_root, workspace)


class ProcessLauncher:
    """Each configuration in a fresh local process forked from a preloaded server (no Ray; this host only)."""

    def __init__(self, measure: MeasureFunction, cache_root: str | None = None,
                 memory_limit_mb: float | None = None) -> None:
        self._measure = measure
        self._cache_root = cache_root
        self._memory_limit_mb = memory_limit_mb
        start_server()

    def unavailable(self, cfg: Any) -> str | None:
        cores = os.cpu_count() or 1
        if cfg.target.startswith("cpu") and cfg.threads > cores:
            return f"{cfg.threads} threads asked for, this host has {cores} cores"
        return None

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                workspace: str | None = None) -> dict:
        return measured_row(self._measure, cfg, run_id, timeout_s, failure,
                            workspace_env(self._cache_root, workspace), self._memory_limit_mb)
