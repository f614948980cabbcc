"""Dispatch measurements: one fresh worker process per configuration, one measurement per node.

Measurements go to Ray (a cluster, or a private local instance) or, for a single host's CLI runs, to local
processes forked from a preloaded server (:mod:`hwbench_pipeline.bench.local_process`, no Ray start-up and no
re-import of torch per configuration). On Ray, placement and exclusivity are Ray resources:

* every node that measures advertises ``hwbench_node_slot: 1``; every measurement asks for it, so two
  measurements never overlap on one node;
* a node advertises ``hwbench_target:<key>: 1`` for each target it has; a measurement asks for its target's,
  so it lands on the hardware it measures (a Ray cluster's nodes are started with these resources);
* ``max_calls=1`` retires the worker after one task: each configuration starts in a fresh process.

Locally (no ``RAY_ADDRESS``, either dispatch) a host-wide lock file keeps two hwbench processes (two Dagster
steps, a CLI run beside a schedule) from measuring at the same time on this host: two local Ray instances,
or a Ray instance and a CLI run, would each believe they own all the cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, failure_row, run_configuration

NODE_SLOT = "hwbench_node_slot"
# every worker of a private local instance quiets a Ray Train logger that cannot work without the dashboard
WORKER_RUNTIME_ENV = {"worker_process_setup_hook": "hwbench_pipeline.bench.ray_worker_setup.configure_worker_logging"}
# Ray takes custom resource names verbatim; ':' keeps them readable and cannot appear in a target key.
TARGET_RESOURCE_PREFIX = "hwbench_target:"

# A configuration is any frozen dataclass with ``label``, ``target`` and ``threads`` (InferenceConfig,
# TrainingConfig); its scenario supplies the function that measures it in the worker and its failure row.
ProgressCallback = Callable[[int, int, Any, dict], None]
MeasureFunction = Callable[[Any, str], dict]
FailureFunction = Callable[[Any, str, str, str], dict]
SkipReason = Callable[[Any, list[dict]], str | None]


def target_resource(key: str) -> str:
    return f"{TARGET_RESOURCE_PREFIX}{key}"


@contextlib.contextmanager
def host_measurement_lock(lock_dir: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the host-wide measurement lock; waits (saying so) while another hwbench process measures."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / "measure.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another hwbench process is measuring on this host; waiting for {path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def ray_session(address: str | None, targets: Sequence[str]) -> Iterator[bool]:
    """Connect to the cluster at ``address`` or start a private local instance; yields True when local."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance needs no token
    if ray.is_initialized():
        yield False
        return
    local = not address
    if local:
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


def _remote_measure(measure_fn: MeasureFunction = run_configuration):
    import ray

    @ray.remote(max_calls=1, max_retries=0)
    def measure(cfg: Any, run_id: str) -> dict:
        return measure_fn(cfg, run_id)

    return measure


def measure_device_peaks(
    target_key: str,
    precisions: tuple[str, ...],
    threads: int,
    *,
    ray_address: str | None = None,
    lock_dir: Path | None = None,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> dict:
    """Peak GFLOP/s and GB/s of the device behind a target, measured on a node that has it, exclusively."""
    import ray

    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.peaks import measure_peaks

    target = parse_target(target_key)
    lock = host_measurement_lock(lock_dir, log) if (lock_dir and not ray_address) else contextlib.nullcontext()
    with lock, ray_session(ray_address, [target_key]):
        remote = ray.remote(max_calls=1, max_retries=0)(measure_peaks)
        ref = remote.options(
            num_cpus=threads if target.device_kind == "cpu" else 1,
            resources={NODE_SLOT: 1, target_resource(target_key): 1},
        ).remote(target.torch_device, precisions, threads)
        return ray.get(ref, timeout=timeout_s)


class _RayExecutor:
    """Each configuration as a Ray task that asks for its node slot and target (see the module docstring)."""

    def __init__(self, measure: MeasureFunction) -> None:
        self._remote = _remote_measure(measure)

    def unavailable(self, cfg: Any) -> str | None:
        missing = _missing_resources(cfg)
        if missing is None:
            return None
        return (f"no Ray node offers {missing}; nodes must advertise {NODE_SLOT} and "
                f"{target_resource(cfg.target)} (see README, 'Using a Ray cluster')")

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction) -> dict:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        ref = self._remote.options(
            num_cpus=cfg.threads if cfg.target.startswith("cpu") else 1,
            resources={NODE_SLOT: 1, target_resource(cfg.target): 1},
        ).remote(cfg, run_id)
        t0 = time.monotonic()
        try:
            return ray.get(ref, timeout=timeout_s)
        except GetTimeoutError:
            ray.cancel(ref, force=True)
            return failure(cfg, run_id, "timeout",
                           f"no result after {time.monotonic() - t0:.0f} s (limit {timeout_s:.0f} s)")
        except RayError as exc:
            return failure(cfg, run_id, "worker_crashed", f"{type(exc).__name__}: {exc}")


class _ProcessExecutor:
    """Each configuration in a fresh local process forked from a preloaded server (no Ray; this host only)."""

    def __init__(self, measure: MeasureFunction) -> None:
        from hwbench_pipeline.bench import local_process

        self._measure_fn = measure
        self._local = local_process
        local_process.start_server()

    def unavailable(self, cfg: Any) -> str | None:
        cores = os.cpu_count() or 1
        if cfg.target.startswith("cpu") and cfg.threads > cores:
            return f"{cfg.threads} threads asked for, this host has {cores} cores"
        return None

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction) -> dict:
        try:
            return self._local.measure_in_fresh_process(self._measure_fn, cfg, run_id, timeout_s)
        except self._local.WorkerTimeout as exc:
            return failure(cfg, run_id, "timeout", str(exc))
        except self._local.WorkerCrashed as exc:
            return failure(cfg, run_id, "worker_crashed", str(exc))


#: how configurations reach a fresh process: Ray tasks (a cluster, or a private local instance), or processes
#: forked on this host from a preloaded server (starts in milliseconds; for a single host's CLI runs)
DISPATCH_MODES = ("ray", "process")


@contextlib.contextmanager
def _executor(dispatch: str, ray_address: str | None, targets: Sequence[str],
              measure: MeasureFunction) -> Iterator[_RayExecutor | _ProcessExecutor]:
    if dispatch == "process":
        if ray_address:
            raise ValueError("process dispatch measures on this host only; unset RAY_ADDRESS or dispatch to Ray")
        yield _ProcessExecutor(measure)
    elif dispatch == "ray":
        with ray_session(ray_address, targets):
            yield _RayExecutor(measure)
    else:
        raise ValueError(f"unknown dispatch {dispatch!r}; one of {', '.join(DISPATCH_MODES)}")


def run_configurations(
    configs: Sequence[InferenceConfig] | Sequence[Any],
    run_id: str,
    *,
    ray_address: str | None = None,
    dispatch: str = "ray",
    timeout_s: float = 600.0,
    retry_contaminated: int = 1,
    lock_dir: Path | None = None,
    on_result: ProgressCallback | None = None,
    log: Callable[[str], None] = print,
    measure: MeasureFunction = run_configuration,
    failure: FailureFunction = failure_row,
    skip_reason: SkipReason | None = None,
) -> list[dict]:
    """Measure every configuration, each in a fresh process; returns one row per configuration (result or
    failure), in order.

    ``dispatch`` is ``"ray"`` (tasks on the cluster at ``ray_address``, or on a private local instance) or
    ``"process"`` (processes forked on this host, see :mod:`hwbench_pipeline.bench.local_process`).
    A contaminated measurement (the machine was busy with something else) is measured again up to
    ``retry_contaminated`` times; the row records how many attempts it took. ``measure`` runs one configuration
    in the worker and ``failure`` makes its failure row (inference's by default; training passes its own).
    ``skip_reason(cfg, rows so far)`` can decide, from what was already measured, that a configuration is not
    worth running (a batch-size sweep past its memory budget): it is then left out, with the reason logged.
    """
    targets = sorted({c.target for c in configs})
    lock = host_measurement_lock(lock_dir, log) if (lock_dir and not ray_address) else contextlib.nullcontext()
    rows: list[dict] = []
    with lock, _executor(dispatch, ray_address, targets, measure) as executor:
        for i, cfg in enumerate(configs, start=1):
            skip = skip_reason(cfg, rows) if skip_reason else None
            if skip:
                log(f"{cfg.label}: not run ({skip})")
                continue
            reason = executor.unavailable(cfg)
            if reason:
                row = failure(cfg, run_id, "unsupported_configuration", reason)
            else:
                row = {}
                for attempt in range(1, retry_contaminated + 2):
                    row = executor.measure(cfg, run_id, timeout_s, failure)
                    row["attempts"] = attempt
                    if not row.get("contaminated"):
                        break
                    if attempt <= retry_contaminated:
                        log(f"{cfg.label}: machine busy with other work during measurement; measuring again")
            rows.append(row)
            if on_result:
                on_result(i, len(configs), cfg, row)
    return rows
