"""Dispatch measurements: every measuring process fresh, several per configuration, one measurement per node.

A scenario (bench/scenarios) says what to measure; a launcher (bench/launchers) how a configuration reaches
a fresh process: a Ray task (a cluster, or a private local instance), a process forked on this host from a
preloaded server (no Ray start-up and no re-import of torch per configuration), or a Ray Train job.

Locally (no ``RAY_ADDRESS``, any launcher) a host-wide lock file keeps two hwbench processes (two Dagster
steps, a CLI run beside a schedule) from measuring at the same time on this host: two local Ray instances,
or a Ray instance and a CLI run, would each believe they own all the cores.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.checkpoint import Checkpoint, config_key
from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.launchers.base import Launcher
from hwbench_pipeline.bench.launchers.process import workspace_dir
from hwbench_pipeline.bench.launchers.ray import NODE_SLOT, ray_session, target_resource
from hwbench_pipeline.bench.scenarios.base import RAY_TRAIN, Scenario
from hwbench_pipeline.bench.scenarios.processes import disturbed, undisturbed
from hwbench_pipeline.bench.trackers.stats import StoppingRule

ProgressCallback = Callable[[int, int, Any, dict], None]
#: (configuration, status) while a long configuration runs, where its launcher reports progress (Ray Train:
#: attempt, step, steps, and each rank's node and pid)
RunningCallback = Callable[[Any, dict], None]


def measure_device_peaks(
    target_key: str,
    precisions: tuple[str, ...],
    threads: int,
    *,
    ray_address: str | None = None,
    lock_dir: Path | None = None,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = print,
    **measure: Any,
) -> dict:
    """Peak GFLOP/s and GB/s of the device behind a target, measured on a node that has it, exclusively (int8
    with the target's own runtime: bench/peaks.py)."""
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
        ).remote(target.torch_device, precisions, threads, backend=target.backend, **measure)
        return ray.get(ref, timeout=timeout_s)


#: how configurations reach a fresh process: Ray tasks (a cluster, or a private local instance), or processes
#: forked on this host from a preloaded server (starts in milliseconds; for a single host's CLI runs)
DISPATCH_MODES = ("ray", "process")


@contextlib.contextmanager
def _launcher(scenario: Scenario, dispatch: str, ray_address: str | None, targets: Sequence[str],
              log: Callable[[str], None], on_progress: RunningCallback | None,
              cache: str | None, memory_limit_mb: float | None) -> Iterator[Launcher]:
    if scenario.launcher == RAY_TRAIN:
        from hwbench_pipeline.bench.launchers.ray_train import RayTrainLauncher

        with ray_session(ray_address, targets), RayTrainLauncher.started(scenario, log, on_progress) as launcher:
            yield launcher
        return
    if dispatch not in DISPATCH_MODES:
        raise ValueError(f"unknown dispatch {dispatch!r}; one of {', '.join(DISPATCH_MODES)}")
    if dispatch == "process" and ray_address:
        raise ValueError("process dispatch measures on this host only; unset RAY_ADDRESS or dispatch to Ray")
    if dispatch == "process":
        from hwbench_pipeline.bench.launchers.process import ProcessLauncher

        yield ProcessLauncher(scenario.measure, cache, memory_limit_mb)
    else:
        from hwbench_pipeline.bench.launchers.ray import RayLauncher

        with ray_session(ray_address, targets):
            yield RayLauncher(scenario.measure, cache, memory_limit_mb)


@dataclass
class _Configuration:
    """One configuration's progress through a run: its process rows so far, then its row."""

    index: int
    cfg: Any
    processes: list[dict] = field(default_factory=list)
    row: dict | None = None


def run_configurations(
    scenario: Scenario,
    configs: Sequence[Any],
    run_id: str,
    *,
    ray_address: str | None = None,
    dispatch: str = "ray",
    timeout_s: float = 600.0,
    retry_contaminated: int | None = None,
    lock_dir: Path | None = None,
    memory_limit_mb: float | None = None,
    checkpoint: Checkpoint | None = None,
    on_result: ProgressCallback | None = None,
    on_progress: RunningCallback | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Measure every configuration of ``scenario``, each process fresh; returns one row per configuration
    (result or failure), in order.

    ``dispatch`` is ``"ray"`` (tasks on the cluster at ``ray_address``, or on a private local instance) or
    ``"process"`` (processes forked on this host, see :mod:`hwbench_pipeline.bench.launchers.process`); a
    scenario launched as Ray Train jobs ignores it.

    A configuration the scenario spreads over processes (``Scenario.process_rule``) is measured in rounds:
    each round runs one more process of every configuration still unsettled, in order, so that its processes
    are spread over the run and one slow stretch of the host cannot make its number; it is settled by the
    rule's ``processes_stop_reason``, a process the host disturbed not counting. Any other configuration runs
    in the first round, and a contaminated measurement (the machine was busy with something else) is measured
    again up to ``retry_contaminated`` times (by default, as often as the scenario says); the row records how
    many attempts it took, unless the launcher counted them itself (Ray Train's restarts). A configuration the
    scenario's ``skip_reason`` rules out, given the rows so far (a batch-size sweep past its memory budget),
    is left out, with the reason logged. ``memory_limit_mb`` caps each measuring process (not Ray Train's
    workers): past it, the configuration is an ``out_of_memory`` row. With a ``checkpoint``
    (bench/checkpoint.py), every process row and every settled configuration is journaled as it comes, and what
    the journal already holds is not measured again: a settled configuration keeps its row, an unsettled one
    continues from its processes (their rows take this run's ``run_id``).
    """
    targets = sorted({c.target for c in configs})
    retries = scenario.retry_contaminated if retry_contaminated is None else retry_contaminated
    lock = host_measurement_lock(lock_dir, log) if (lock_dir and not ray_address) else contextlib.nullcontext()
    states = [_Configuration(i, cfg) for i, cfg in enumerate(configs)]
    finished = _resume(states, checkpoint, run_id, log)

    # each configuration's export cache lives on this host until it is settled: with a Ray cluster, the nodes
    # export for themselves
    exports = contextlib.nullcontext(None) if ray_address else tempfile.TemporaryDirectory(prefix="hwbench-exports-")

    def settle(state: _Configuration, row: dict) -> None:
        nonlocal finished
        state.row = row
        finished += 1
        if checkpoint:
            checkpoint.settle(state.cfg, row)
        if cache:
            shutil.rmtree(workspace_dir(cache, str(state.index)), ignore_errors=True)
        if on_result:
            on_result(finished, len(configs), state.cfg, row)

    with lock, exports as cache, _launcher(scenario, dispatch, ray_address, targets, log, on_progress, cache,
                                           memory_limit_mb) as launcher:
        pending = [s for s in states if s.row is None]
        round_number = 0
        while pending:
            round_number += 1
            if round_number > 1:
                log(f"round {round_number}: {len(pending)} configuration(s) need another measuring process")
            for state in pending:
                cfg = state.cfg
                if round_number == 1:
                    skip = scenario.skip_reason(cfg, [s.row for s in states if s.row])
                    if skip:
                        log(f"{cfg.label}: not run ({skip})")
                        state.row = {}  # settled, without a row
                        if checkpoint:
                            checkpoint.settle(cfg, None)
                        continue
                    reason = launcher.unavailable(cfg)
                    if reason:
                        settle(state, scenario.failure_row(cfg, run_id, "unsupported_configuration", reason))
                        continue
                rule = scenario.process_rule(cfg)
                if rule is None:
                    settle(state, _measure_with_retries(launcher, scenario, cfg, run_id, timeout_s, retries, log))
                else:
                    _measure_one_more_process(launcher, scenario, state, rule, run_id, timeout_s, retries, settle,
                                              log, checkpoint)
            pending = [s for s in pending if s.row is None]
    return [s.row for s in states if s.row]


def _resume(states: list[_Configuration], checkpoint: Checkpoint | None, run_id: str,
            log: Callable[[str], None]) -> int:
    """Give each configuration what the checkpoint holds of it; returns how many are settled with a row."""
    progress = checkpoint.load() if checkpoint else {}
    settled = processes = 0
    for state in states:
        held = progress.get(config_key(state.cfg))
        if held is None:
            continue
        if held.settled:
            state.row = {**held.row, "run_id": run_id} if held.row else {}
            settled += bool(held.row)
        else:
            state.processes = [{**r, "run_id": run_id} for r in held.processes]
            processes += len(state.processes)
    if progress:
        log(f"resuming from {checkpoint.path}: {settled} configuration(s) already measured, {processes} measuring "
            "process(es) of unsettled ones kept; nothing measured is measured again")
    return settled


def _measure_with_retries(launcher: Launcher, scenario: Scenario, cfg: Any, run_id: str, timeout_s: float,
                          retries: int, log: Callable[[str], None], workspace: str | None = None) -> dict:
    row: dict = {}
    spent = 0.0
    for attempt in range(1, retries + 2):
        row, took = _timed_measure(launcher, scenario, cfg, run_id, timeout_s, workspace)
        spent += took
        row["machine_s"] = spent  # every attempt occupied the machine, the discarded ones too
        row.setdefault("attempts", attempt)
        if not row.get("contaminated"):
            break
        if attempt <= retries:
            log(f"{cfg.label}: machine busy with other work during measurement; measuring again")
    return row


def _timed_measure(launcher: Launcher, scenario: Scenario, cfg: Any, run_id: str, timeout_s: float,
                   workspace: str | None) -> tuple[dict, float]:
    """One measuring process's row, and how long it occupied the machine: from launching the process to its row
    (start-up, build or export, warm-up, timed calls)."""
    t0 = time.monotonic()
    row = launcher.measure(cfg, run_id, timeout_s, scenario.failure_row, workspace=workspace)
    return row, time.monotonic() - t0


def _measure_one_more_process(launcher: Launcher, scenario: Scenario, state: _Configuration, rule: StoppingRule,
                              run_id: str, timeout_s: float, retries: int,
                              settle: Callable[[_Configuration, dict], None], log: Callable[[str], None],
                              checkpoint: Checkpoint | None) -> None:
    cfg = state.cfg
    measured = scenario.process_config(cfg, first=not state.processes)
    if rule.max_processes == 1:  # one measuring window, measured again when disturbed (measurement method hwbench-1)
        row = _measure_with_retries(launcher, scenario, measured, run_id, timeout_s, retries, log, str(state.index))
    else:
        row, took = _timed_measure(launcher, scenario, measured, run_id, timeout_s, str(state.index))
        row["machine_s"] = took
    if row["status"] != "ok":  # a process that fails fails the configuration: the others cannot stand for it
        failure = scenario.failure_row(cfg, run_id, row["failure_class"], row["message"], row.get("started_at"))
        settle(state, {**failure, "attempts": len(state.processes) + 1})
        return
    state.processes.append(row)
    if checkpoint:
        checkpoint.add_process(cfg, row)
    if disturbed(state.processes)[-1]:
        log(f"{cfg.label}: machine busy with other work during process {len(state.processes)}; it does not count")
    medians = [r["p50_ms"] for r in undisturbed(state.processes)]
    stop = rule.processes_stop_reason(medians, len(state.processes))
    if stop:
        own = state.processes[0]["stop_reason"] if rule.max_processes == 1 else stop
        settle(state, scenario.combine(cfg, state.processes, rule, own))
