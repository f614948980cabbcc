"""Run by Ray at the start of every worker process of an hwbench Ray session (``worker_process_setup_hook``)."""

from __future__ import annotations

import logging

#: Ray Train's placement-group cleaner asks the State API (served by Ray's dashboard) every second whether the
#: training controller is still alive. The private local instance runs without the dashboard (fewer background
#: processes beside a measurement), so every ask fails and logs a warning, dozens per distributed run. A leaked
#: placement group there ends with the instance at the end of the stage; a cluster has its dashboard.
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def configure_worker_logging() -> None:
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)
