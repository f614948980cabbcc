"""The private local Ray instance: every worker runs hwbench's setup hook."""

import logging
import sys

import pytest
import ray

from hwbench_pipeline.bench.launchers.ray import ray_session
from hwbench_pipeline.bench.ray_worker_setup import PLACEMENT_GROUP_CLEANER_LOGGER


def _cleaner_log_level() -> int:
    return logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel()


def test_workers_quiet_the_placement_group_cleaner_that_needs_the_dashboard():
    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    assert _cleaner_log_level() < logging.ERROR  # the driver's own logging is left alone
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    with ray_session(None, ["cpu-torch"]) as local:
        assert local
        level = ray.get(ray.remote(num_cpus=0)(_cleaner_log_level).remote(), timeout=120)
    assert level == logging.ERROR
