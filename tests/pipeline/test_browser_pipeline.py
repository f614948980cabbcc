"""The smoke profile on a browser target through Dagster: each family's rows measured in headless Chromium by
onnxruntime-web's WASM provider, checked against torch. WebGPU goes through the same asset, dispatch and backend
with another provider; on a host without a GPU it is SwiftShader, hundreds of times slower, so its rows are proved
by tests/bench/browser (its adapter recorded as software) and measured in full by benchmarks/browser_targets.py."""

import dagster as dg
import polars as pl
import pytest

from hwbench_pipeline.assets import ALL_ASSETS, MEASUREMENTS
from hwbench_pipeline.bench.hardware import detect_targets, skipped_targets
from hwbench_pipeline.bench.profiles import load_profile
from hwbench_pipeline.partitions import hardware_target_partitions
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.store import Warehouse

TARGETS = ("browser-chromium-wasm",)
FAMILIES = load_profile("smoke").browsers.families


@pytest.fixture(scope="module")
def browser_smoke(tmp_path_factory):
    detected = {t.key for t in detect_targets()}
    absent = {key: why for key, why in skipped_targets() if key in TARGETS}
    if absent:
        pytest.skip(f"browser targets absent here: {absent}")
    assert set(TARGETS) <= detected
    data_dir = tmp_path_factory.mktemp("data")
    resources = {"settings": HwbenchSettings(profile="smoke"), "warehouse": WarehouseResource(data_dir=str(data_dir)),
                 "ray": RayResource()}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(hardware_target_partitions.name, list(TARGETS))
        results = {target: dg.materialize(ALL_ASSETS, selection=MEASUREMENTS, instance=instance,
                                          resources=resources, partition_key=target, raise_on_error=False)
                   for target in TARGETS}
        yield results, Warehouse(data_dir)


@pytest.mark.slow
def test_the_smoke_profile_on_chromium_stores_rows_that_matched_torch(browser_smoke):
    results, warehouse = browser_smoke
    assert all(r.success for r in results.values()), {t: [e.message for e in r.get_step_failure_events()]
                                                      for t, r in results.items()}
    rows = warehouse.read("inference_results")
    failures = warehouse.read("failures").filter(pl.col("scenario") == "inference")
    for target in TARGETS:
        ok, failed = rows.filter(pl.col("target") == target), failures.filter(pl.col("target") == target)
        # every family of the profile's browsers: section is a measured row or a classified failure
        assert set(ok["family"]) | set(failed["family"]) == set(FAMILIES), target
        assert ok.height == len(FAMILIES), failed.select("family", "failure_class", "message").to_dicts()
        # every row was compared with torch (a configuration outside the tolerance is a failure row instead)
        assert ok["max_rel_diff"].is_not_null().all() and (ok["p50_ms"] > 0).all()
        assert (ok["device_kind"] == "browser").all() and (ok["browser"] == "chromium").all()
        assert ok["browser_version"].str.starts_with("Chromium").all()
        assert (ok["cold_start_ms"] > 0).all() and (ok["download_bytes"] > 0).all()
        assert ok["cross_origin_isolated"].all() and (ok["wasm_threads"] == ok["threads"]).all()
    assert (rows["execution_provider"] == "wasm").all()
    # training, distributed training and generation do not run in a browser: refused rows saying so
    refused = warehouse.read("failures").filter(pl.col("target").is_in(list(TARGETS))
                                                & (pl.col("scenario") != "inference"))
    assert refused.height > 0 and (refused["failure_class"] == "unsupported_configuration").all()
