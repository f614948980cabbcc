"""The private local Ray instance: every worker runs hwbench's setup hook."""

import logging
import os
import subprocess
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


CONNECT = "import ray; ray.init(address={address!r}); print('connected', ray.cluster_resources())"


@pytest.mark.slow
def test_private_local_instances_one_after_another_refuse_clients_without_their_token(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # as a user's shell has it (the test suite disables it)
    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    outsider = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    with ray_session(None, ["cpu-torch"]):  # a first session, as the peaks stage has before the measurements
        assert ray.get(ray.remote(num_cpus=0)(_cleaner_log_level).remote(), timeout=120)
    with ray_session(None, ["cpu-torch"]):
        address = ray.get_runtime_context().gcs_address
        assert ray.get(ray.remote(num_cpus=0)(_cleaner_log_level).remote(), timeout=120)  # its own workers get in
        for guess in ({}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}):
            attempt = subprocess.run([sys.executable, "-c", CONNECT.format(address=address)], env={**outsider, **guess},
                                     capture_output=True, text=True, timeout=180)
            assert attempt.returncode != 0 and "connected" not in attempt.stdout, attempt.stdout
    assert {k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")} == \
        {k: v for k, v in outsider.items() if k.startswith("RAY_AUTH")}, "the session's token outlived it"
