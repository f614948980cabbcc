"""architecture_coverage[target]: the coverage sweep as an asset, incremental and resumable, stored and queryable."""

import json
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from hwbench_pipeline.assets.coverage import architecture_coverage, journal_path
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.queries import WarehouseQueries
from hwbench_pipeline.warehouse.store import Warehouse

PROFILE = """
families: [bert]
presets: [tiny]
batch_sizes: [1]
seq_lens: [16]
precisions: [fp32]
threads: 1
architectures:
  models: [roberta, vit, gpt2]
"""


def _materialize(instance, profile, data_dir, target="cpu-torch"):
    result = dg.materialize(
        [architecture_coverage], partition_key=target, instance=instance,
        resources={"settings": HwbenchSettings(profile=str(profile)),
                   "warehouse": WarehouseResource(data_dir=str(data_dir)),
                   "ray": RayResource(address="")})
    assert result.success
    return result.asset_materializations_for_node("architecture_coverage")[0].metadata


@pytest.mark.slow
def test_the_sweep_stores_each_architecture_once_and_resumes_after_a_kill(tmp_path, monkeypatch):
    monkeypatch.setenv("HWBENCH_LOCK_DIR", str(tmp_path / "locks"))
    profile = tmp_path / "p.yaml"
    profile.write_text(textwrap.dedent(PROFILE))
    data_dir = tmp_path / "data"
    journal = journal_path(str(data_dir), "cpu-torch")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch"])
        first = _materialize(instance, profile, data_dir)
        assert (first["probed_now"].value, first["rows_stored"].value, first["ok"].value) == (3, 3, 3)

        # A kill after two more probes were journaled but before they were stored: the next run probes only
        # the one left and stores the three new rows.
        profile.write_text(textwrap.dedent(PROFILE).replace("[roberta, vit, gpt2]", "[roberta, vit, gpt2, t5, "
                                                                                     "llama, swin]"))
        from hwbench_pipeline.bench.catalog.probe import ProbeConfig, probe_architecture

        with journal.open("a") as out:
            for model_type in ("t5", "llama"):
                out.write(json.dumps(probe_architecture(ProbeConfig(model_type), "killed-run"), default=str) + "\n")
        second = _materialize(instance, profile, data_dir)
        assert (second["probed_now"].value, second["rows_stored"].value) == (1, 3)
        third = _materialize(instance, profile, data_dir)  # nothing changed: nothing probed or stored again
        assert (third["probed_now"].value, third["rows_stored"].value, third["ok"].value) == (0, 0, 6)

    table = Warehouse(data_dir).read("architecture_coverage", latest=True)
    assert sorted(table["model_type"]) == ["gpt2", "llama", "roberta", "swin", "t5", "vit"]
    assert set(table["status"]) == {"ok"} and set(table["target"]) == {"cpu-torch"}
    assert dict(zip(table["model_type"], table["category"], strict=True))["vit"] == "vision"

    by_category = WarehouseQueries(data_dir).architecture_coverage("category")
    shares = {row["category"]: (row["architectures"], row["ok"], row["share_ok"])
              for row in by_category.iter_rows(named=True)}
    assert shares == {"text encoder": (1, 1, 1.0), "text decoder": (2, 2, 1.0), "encoder-decoder": (1, 1, 1.0),
                      "vision": (2, 2, 1.0)}
    shown = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "query", "coverage", "--by", "category",
                            "--data-dir", str(data_dir), "--format", "csv"], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith("category,target,architectures,ok,text_tower_only,share_ok")


def test_a_profile_without_an_architectures_section_sweeps_nothing(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(textwrap.dedent(PROFILE).split("architectures:")[0])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("hardware_targets", ["cpu-torch"])
        meta = _materialize(instance, profile, tmp_path / "data")
    assert meta["probed"].value == 0 and not (tmp_path / "data" / "sweeps").exists()
