"""The Ray Train launcher: each configuration as one Ray Train job (``TorchTrainer.fit()``) with fresh worker
processes, restarted by Ray Train after a lost worker, watched for progress and its time limit, and turned
into a row by its scenario."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from hwbench_pipeline.bench.failures import BenchmarkFailure, classify
from hwbench_pipeline.bench.launchers.base import FailureFunction

PROGRESS_POLL_S = 0.5
# Ray Train's defaults, tuned for long jobs, would slow short benchmark runs down or fail them on a busy host:
# a 60 s limit on starting the workers, 2 s between health polls (the run's end is noticed that late), and a
# preemption watcher and metrics actors (extra processes). Values the user set in the environment win.
RAY_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
}



class TrainJobScenario(Protocol):
    """What the launcher asks of a scenario that runs as Ray Train jobs."""

    def refusal(self, cfg: Any, nodes: list[dict]) -> str | None:
        """Why the cluster, whose nodes are ``nodes``, cannot run ``cfg`` (None when it can)."""

    def probe_refusal(self, cfg: Any) -> tuple[str | None, dict]:
        """Why the node a worker would land on cannot run ``cfg`` (a probe task there, where one is needed), and
        what the probe found."""

    def trainer(self, cfg: Any, loop_config: dict, storage: str) -> Any:
        """The ``TorchTrainer`` of ``cfg``; ``loop_config`` reaches every worker."""

    def row_from_result(self, cfg: Any, run_id: str, payload: dict, *, started: datetime, fit_s: float) -> dict:
        """The result row of a finished job (rank 0's return value)."""

    def failure_row(self, cfg: Any, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None, **extra: Any) -> dict:
        """A classified failure row."""


def _run_monitor_class():
    import ray

    @ray.remote(num_cpus=0)
    class RunMonitor:
        """Counts each configuration's attempts (Ray Train restarts the whole worker group after a failure)
        and holds its progress and worker pids, for the driver's progress reports."""

        def __init__(self) -> None:
            self.state: dict[str, dict] = {}

        def begin(self, key: str, ranks: list[dict]) -> int:
            attempt = self.state.get(key, {}).get("attempt", 0) + 1
            self.state[key] = {"attempt": attempt, "step": 0, "ranks": ranks}
            return attempt

        def progress(self, key: str, step: int) -> None:
            self.state.setdefault(key, {"attempt": 0, "ranks": []})["step"] = step

        def status(self, key: str) -> dict | None:
            return self.state.get(key)

    return RunMonitor


@contextlib.contextmanager
def _ray_train_environment(timeout_s: float) -> Iterator[None]:
    """Ray Train reads these from the driver's environment (and passes them to its controller)."""
    wanted = {**RAY_TRAIN_ENV, "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(max(120.0, timeout_s / 2))}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if saved[k] is None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _failure_class(exc: BaseException) -> str:
    """Failure class of a failed ``fit()``: a worker that died is ``worker_crashed``; a worker's own
    exception keeps its class (out of memory, ...)."""
    failures = getattr(exc, "worker_failures", None) or {}
    for err in failures.values():
        cause = getattr(err, "cause", None) or err
        if isinstance(cause, BenchmarkFailure):
            return cause.failure_class
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(s in text for s in ("actordiederror", "actor died", "died unexpectedly", "connection closed by peer",
                               "workerhealthcheck", "sigkill", "node died")):
        return "worker_crashed"
    if "timeout" in text or "timed out" in text:
        return "timeout"
    return classify(exc)


def _watch(cfg: Any, fit: Callable[[], Any], monitor: Any, key: str,
           on_progress: Callable[[dict], None] | None) -> Any:
    """Run ``fit`` on a thread, reporting progress while it runs; raises TimeoutError past the limit."""
    import ray

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"hwbench-fit-{key}", daemon=True)
    thread.start()
    deadline = time.monotonic() + cfg.timeout_s
    last = None
    while thread.is_alive():
        thread.join(PROGRESS_POLL_S)
        if on_progress:
            status = ray.get(monitor.status.remote(key))
            if status and status != last:
                last = status
                on_progress({**status, "steps": cfg.warmup_steps + cfg.steps})
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cfg.label}: no result after {cfg.timeout_s:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]

class RayTrainLauncher:
    """Each configuration as a Ray Train job, one after the other, on the connected Ray cluster."""

    def __init__(self, scenario: TrainJobScenario, monitor: Any, log: Callable[[str], None],
                 on_progress: Callable[[Any, dict], None] | None = None) -> None:
        self._scenario = scenario
        self._monitor = monitor
        self._log = log
        self._on_progress = on_progress
        self._started = 0
        self._timed_out: str | None = None

    @classmethod
    @contextlib.contextmanager
    def started(cls, scenario: TrainJobScenario, log: Callable[[str], None] = print,
                on_progress: Callable[[Any, dict], None] | None = None) -> Iterator[RayTrainLauncher]:
        """A launcher with its run monitor (an actor on this driver's node) for as long as the block runs;
        ``on_progress(cfg, status)`` hears of every step a job reports."""
        import ray

        monitor = _run_monitor_class().options(scheduling_strategy=_driver_node_strategy()).remote()
        try:
            yield cls(scenario, monitor, log, on_progress)
        finally:
            ray.kill(monitor)

    def unavailable(self, cfg: Any) -> str | None:
        import ray

        if self._timed_out:  # nothing starts after a job that may still hold the workers: measure says so
            return None
        return self._scenario.refusal(cfg, ray.nodes())

    def measure(self, cfg: Any, run_id: str, timeout_s: float, failure: FailureFunction,
                workspace: str | None = None) -> dict:
        """``cfg``'s row. The job's own time limit is the configuration's (``cfg.timeout_s``), and its failure
        rows are the scenario's own, which also say where the ranks ran and how often Ray Train restarted."""
        self._started += 1
        if self._timed_out:
            return self._scenario.failure_row(cfg, run_id, "timeout", f"not started: {self._timed_out} did not "
                                              "finish in time and may still hold the workers", attempts=None)
        refusal, probed = self._scenario.probe_refusal(cfg)
        if refusal:
            where = {"rank_nodes": [probed["node_id"]]} if probed else {}
            return self._scenario.failure_row(cfg, run_id, "unsupported_configuration", refusal, attempts=None,
                                              **where)
        row = self._run_one(cfg, run_id)
        if row["status"] != "ok" and row["failure_class"] == "timeout":
            self._timed_out = cfg.label
        return row

    def _progress(self, cfg: Any) -> Callable[[dict], None]:
        """Logs a line when an attempt starts (a restart after a lost worker shows here) and at each quarter."""
        seen: list[tuple[int, int]] = []

        def report(status: dict) -> None:
            if self._on_progress:
                self._on_progress(cfg, status)
            mark = (status["attempt"], 4 * status["step"] // max(status["steps"], 1))
            if not seen or seen[-1] != mark:
                seen.append(mark)
                self._log(f"{cfg.label}: attempt {status['attempt']}, step {status['step']}/{status['steps']}")
        return report

    def _run_one(self, cfg: Any, run_id: str) -> dict:
        import ray

        started = datetime.now(UTC)
        key = f"hwbench-{run_id[:12]}-{self._started}-{cfg.strategy}-x{cfg.workers}"
        storage = tempfile.mkdtemp(prefix="hwbench-ray-train-")
        loop_config = {"cfg": dataclasses.asdict(cfg), "monitor": self._monitor, "key": key}
        t0 = time.perf_counter()
        try:
            with _ray_train_environment(cfg.timeout_s):
                result = _watch(cfg, lambda: self._scenario.trainer(cfg, loop_config, storage).fit(), self._monitor,
                                key, self._progress(cfg))
        except TimeoutError as exc:
            return self._scenario.failure_row(cfg, run_id, "timeout", str(exc), started, attempts=None)
        except Exception as exc:  # noqa: BLE001 - a failed fit (out of retries) is a row, not an abort
            status = ray.get(self._monitor.status.remote(key)) or {}
            return self._scenario.failure_row(cfg, run_id, _failure_class(exc), f"{type(exc).__name__}: {exc}",
                                              started, attempts=status.get("attempt"))
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        payload = result.return_value
        if not payload:
            return self._scenario.failure_row(cfg, run_id, "runtime_error", "rank 0 returned no figures", started,
                                              attempts=None)
        if "failure" in payload:
            failure_class, message = payload["failure"]
            return self._scenario.failure_row(cfg, run_id, failure_class, message, started,
                                              attempts=payload.get("attempt"),
                                              rank_nodes=[r["node_id"] for r in payload["ranks"]])
        return self._scenario.row_from_result(cfg, run_id, payload, started=started, fit_s=time.perf_counter() - t0)


def _driver_node_strategy() -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
