"""failure_patterns: failures of measurements and of the coverage sweep, grouped, stored and queryable."""

import subprocess
import sys

import dagster as dg

from hwbench_pipeline.assets.patterns import failure_patterns
from hwbench_pipeline.bench.catalog.probe import ProbeConfig, probe_row
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, failure_row
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.store import Warehouse


def test_failures_from_runs_and_probes_become_patterns_with_a_fix(tmp_path):
    data_dir = tmp_path / "data"
    warehouse = Warehouse(data_dir)
    probes = [probe_row(ProbeConfig(m), "sweep-1", status="failed", failure_class="runtime_error", stage="forward",
                        message=f"TypeError: {cls}.forward() missing 1 required positional argument: '{arg}'",
                        raised_at="torch.nn.modules.module:_call_impl")
              for m, cls, arg in (("timesfm", "TimesFmModel", "freq"), ("perceiver", "PerceiverModel", "inputs"))]
    probes.append(probe_row(ProbeConfig("vit"), "sweep-1", status="ok"))
    warehouse.write("architecture_coverage", probes, run_id="sweep-1", partition="cpu-torch")
    refused = failure_row(InferenceConfig("bert", "tiny", "cpu-onnxruntime", 1, 8, precision="bf16"), "run-1",
                          "unsupported_configuration", "precision bf16 is not supported on cpu-onnxruntime")
    warehouse.write("failures", [refused], run_id="run-1", partition="cpu-onnxruntime")

    result = dg.materialize([failure_patterns], resources={"warehouse": WarehouseResource(data_dir=str(data_dir))})
    assert result.success
    meta = result.asset_materializations_for_node("failure_patterns")[0].metadata
    assert (meta["failures"].value, meta["patterns"].value) == (3, 2)
    stored = warehouse.read("failure_patterns").sort("count", descending=True)
    top = stored.row(0, named=True)
    assert top["count"] == 2 and top["architectures"] == "perceiver, timesfm" and "input recipe" in top["fix"]
    assert stored.row(1, named=True)["targets"] == "cpu-onnxruntime"

    shown = subprocess.run([sys.executable, "-m", "hwbench_pipeline.cli", "query", "failures", "--data-dir",
                            str(data_dir), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert '"count": 2' in shown.stdout and "perceiver, timesfm" in shown.stdout
