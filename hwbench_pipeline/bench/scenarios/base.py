"""What every scenario provides to dispatch and to the measurement assets: its configurations and refusals for
one target, the measurement run in the worker, its failure row, which configurations to skip given what was
measured, the finishing step over all rows, and one progress line per configuration."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from hwbench_pipeline.bench.profiles import Profile
    from hwbench_pipeline.bench.trackers.stats import StoppingRule


#: how a scenario's configurations reach a fresh process (bench/launchers): one process per configuration
#: (forked here or a Ray task), or one Ray Train job per configuration
ONE_PROCESS = "one_process"
RAY_TRAIN = "ray_train"


@dataclass
class Plan:
    """The configurations of a profile a scenario runs on one target, and a failure row for each it refuses."""

    runnable: list[Any]
    refused: list[dict] = field(default_factory=list)
    note: str = ""  # why whole parts were refused, for the log
    #: the runnable configurations the profile named itself (not a sweep's extensions): one that did not run
    #: must still be explained by a row
    named: list[Any] = field(default_factory=list)


class Scenario(ABC):
    name: ClassVar[str]
    #: the warehouse table its measured rows go to
    results_table: ClassVar[str]
    #: whether its rows carry raw samples for the latency_samples table
    keeps_samples: ClassVar[bool] = True
    launcher: ClassVar[str] = ONE_PROCESS
    #: a measurement run id of its own (``<dagster run>-<scenario>``), so that two scenarios materialized in
    #: one Dagster run never overwrite each other's files; inference keeps the Dagster run id
    run_id_suffix: ClassVar[str] = ""
    #: how many times a measurement the host's other work contaminated is measured again
    retry_contaminated: ClassVar[int] = 1

    @abstractmethod
    def plan(self, profile: Profile, target: str, run_id: str) -> Plan:
        """The profile's configurations on ``target``, the refused ones as failure rows of ``run_id``."""

    def measure(self, cfg: Any, run_id: str) -> dict:
        """Measure one configuration in the worker process (one-process launchers); a failure becomes its
        classified row, never an exception."""
        raise NotImplementedError(f"the {self.name} scenario runs as {self.launcher} jobs, not one process each")

    @abstractmethod
    def failure_row(self, cfg: Any, run_id: str, failure_class: str, message: str,
                    started: datetime | None = None) -> dict:
        """The failures-table row of a configuration that could not be measured."""

    def process_rule(self, cfg: Any) -> StoppingRule | None:
        """The rule that spreads ``cfg``'s samples over several measuring processes (trackers/stats.py,
        "Processes"), or None when one process measures it (and a disturbed one is measured again)."""
        return None

    def process_config(self, cfg: Any, first: bool) -> Any:
        """What one of the processes of a configuration spread over several measures: its share of the
        sampling time, and, after the ``first``, without what only the first needs to do (count FLOPs)."""
        return cfg

    def combine(self, cfg: Any, rows: list[dict], rule: StoppingRule, stop_reason: str) -> dict:
        """``cfg``'s row from its processes' rows (which each measured ``process_config(cfg)``), keyed by
        ``cfg`` itself."""
        from hwbench_pipeline.bench.scenarios.processes import combine_process_rows

        return {**combine_process_rows(rows, rule, stop_reason), **cfg.key_fields()}

    def skip_reason(self, cfg: Any, rows: list[dict]) -> str | None:
        """Why ``cfg`` is not worth running, given the rows measured so far (None: run it)."""
        return None

    def finish(self, rows: list[dict], plan: Plan, run_id: str, peaks: dict | None) -> list[dict]:
        """Every row of the run, once all configurations have finished: the measured rows completed with what
        needs all of them, plus the refused ones."""
        return rows + plan.refused

    @abstractmethod
    def describe(self, cfg: Any, row: dict) -> str:
        """One line on a finished configuration, for progress logs."""

    def is_warning(self, row: dict) -> bool:
        """Whether a finished configuration's line is a warning (it failed, or its figures say something is
        wrong)."""
        return row["status"] != "ok"


def failure_line(cfg: Any, row: dict, width: int = 200) -> str:
    """The progress line of a failed configuration."""
    return f"{cfg.label}: FAILED {row['failure_class']}: {row['message'].splitlines()[0][:width]}"
