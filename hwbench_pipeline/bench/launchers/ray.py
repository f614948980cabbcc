"""The Ray launcher: each configuration as a Ray task on a node that has its target, one measurement per node.

Placement and exclusivity are Ray resources:

* every node that measures advertises ``hwbench_node_slot: 1``; every measurement asks for it, so two
  measurements never overlap on one node;
* a node advertises ``hwbench_target:<key>: 1`` for each target it has; a measurement asks for its target's,
  so it lands on the hardware it measures (a Ray cluster's nodes are started with these resources);
* a Ray worker does not measure in its own process: it forks a fresh process for each configuration from a
  preloaded server (launchers/process.py), so a configuration starts in milliseconds in an address space of
  its own, and the worker, with its imports done, serves the next one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

from hwbench_pipeline.bench.launchers.base import FailureFunction, MeasureFunction

NODE_SLOT = "hwbench_node_slot"
# every worker of a private local instance quiets a Ray Train logger that cannot work without the dashboard
WORKER_RUNTIME_ENV = {"worker_process_setup_hook": "hwbench_pipeline.bench.ray_worker_setup.configure_worker_logging"}
# Ray takes custom resource names verbatim; ':' keeps them readable and cannot appear in a target key.
TARGET_RESOURCE_PREFIX = "hwbench_target:"


def target_resource(key: str) -> str:
    return f"{TARGET_RESOURCE_PREFIX}{key}"


#: the token of this process's private local instances: one per process, because Ray caches the token it
#: loaded, and every session of the process must agree with it
_PROCESS_TOKEN = secrets.token_hex(32)


@contextlib.contextmanager
def _private_token() -> Iterator[None]:
    """Token authentication for a private local instance, with a token of its own: its servers listen on every
    interface (Ray 2.60 has no loopback-only setting), so without a token anyone who can reach this host could
    run code in it. The token lives in this process's environment, which the instance's processes inherit and
    only this user can read, for the session only; a ``RAY_AUTH_MODE`` the user set is theirs to keep."""
    from ray._raylet import AuthenticationTokenLoader, Config

    def reload() -> None:  # Ray read its settings and token once: read them again (as ray.init does)
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not os.environ.get("RAY_AUTH_TOKEN"):
        os.environ["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    reload()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reload()


@contextlib.contextmanager
def ray_session(address: str | None, targets: Sequence[str]) -> Iterator[bool]:
    """Connect to the cluster at ``address`` or start a private local instance; yields True when local."""
    import ray

    if ray.is_initialized():
        yield False
        return
    local = not address
    with contextlib.ExitStack() as session:
        if local:
            session.enter_context(_private_token())
            ray.init(
                num_cpus=os.cpu_count(),
                resources={NODE_SLOT: 1, **{target_resource(t): 1 for t in targets}},
                include_dashboard=False,
                logging_level="WARNING",
                log_to_driver=True,
                # Ray would otherwise start idle workers in the background, which import Python while a
                # measurement runs: a worker is started only when a configuration is ready to run.
                _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
                runtime_env=WORKER_RUNTIME_ENV,
            )
        else:
            ray.init(address=address, logging_level="WARNING")
        try:
            yield local
        finally:
            ray.shutdown()


def _missing_resources(cfg: Any) -> str | None:
    import ray

    total = ray.cluster_resources()
    for name in (NODE_SLOT, target_resource(cfg.target)):
        if total.get(name, 0) < 1:
            return name
    if total.get("CPU", 0) < cfg.threads:
        return f"{cfg.threads} CPUs on one node"
    return None


def _remote_measure(measure_fn: MeasureFunction):
    import ray

    @ray.remote(max_retries=0)
    def measure(cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction, env: dict[str, str],
                memory_limit_mb: float | None) -> dict:
        from hwbench_pipeline.bench.launchers.process import measured_row

        return measured_row(measure_fn, cfg, run_id, timeout_s, failure, env, memory_limit_mb)

    return measure


#: how much longer than the measuring process's own limit the driver waits for the task (the worker kills the
#: process at its limit and returns the timeout row)
DRIVER_GRACE_S = 60.0


class RayLauncher:
    """Each configuration as a Ray task that asks for its node slot and target (see the module docstring).

    ``cache_root``, a directory every node that measures can reach (this host's, with a private local
    instance), holds the export cache of each configuration."""

    def __init__(self, measure: MeasureFunction, cache_root: str | None = None,
                 memory_limit_mb: float | None = None) -> None:
        self._remote = _remote_measure(measure)
        self._cache_root = cache_root
        self._memory_limit_mb = memory_limit_mb

    def unavailable(self, cfg: Any) -> str | None:
        missing = _missing_resources(cfg)
        if missing is None:
            return None
        return (f"no Ray node offers {missing}; nodes must advertise {NODE_SLOT} and "
                f"{target_resource(cfg.target)} (see README, 'Using a Ray cluster')")

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                workspace: str | None = None) -> dict:
        import ray
        from ray.exceptions import GetTimeoutError, OutOfMemoryError, RayError

        from hwbench_pipeline.bench.launchers.process import workspace_env

        ref = self._remote.options(
            num_cpus=cfg.threads if cfg.target.startswith("cpu") else 1,
            resources={NODE_SLOT: 1, target_resource(cfg.target): 1},
        ).remote(cfg, run_id, timeout_s, failure, workspace_env(self._cache_root, workspace), self._memory_limit_mb)
        t0 = time.monotonic()
        try:
            return ray.get(ref, timeout=timeout_s + DRIVER_GRACE_S)
        except GetTimeoutError:
            ray.cancel(ref, force=True)
            return failure(cfg, run_id, "timeout",
                           f"no result after {time.monotonic() - t0:.0f} s (limit {timeout_s:.0f} s)")
        except OutOfMemoryError as exc:  # Ray's memory monitor killed the worker
            return failure(cfg, run_id, "out_of_memory", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        except RayError as exc:
            return failure(cfg, run_id, "worker_crashed", f"{type(exc).__name__}: {exc}")
