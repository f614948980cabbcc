"""Assets, one module per stage. They stay thin: the work lives in bench/, warehouse/, predict/, report/."""

from hwbench_pipeline.assets.catalog import model_catalog
from hwbench_pipeline.assets.comparisons import interleaved_comparisons
from hwbench_pipeline.assets.coverage import architecture_coverage
from hwbench_pipeline.assets.distributed import distributed_runs
from hwbench_pipeline.assets.generation import generation_runs
from hwbench_pipeline.assets.hardware import hardware_targets
from hwbench_pipeline.assets.patterns import failure_patterns
from hwbench_pipeline.assets.planning import benchmark_plan, planned_runs
from hwbench_pipeline.assets.predictions import predictions
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.recommendations import hardware_recommendations
from hwbench_pipeline.assets.reports import comparison_report, regression_report
from hwbench_pipeline.assets.runs import inference_runs
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.assets.training import training_runs

#: partitioned by hardware target, in the "benchmarks" group (schedules and sensors select that group)
MEASUREMENTS = [inference_runs, training_runs, distributed_runs, generation_runs]
#: partitioned by hardware target, in the opt-in "coverage" group (no schedule or sensor selects it by default)
COVERAGE = [architecture_coverage]
UNPARTITIONED_UPSTREAM = [model_catalog, hardware_targets]
#: the profile's interleaved comparisons: unpartitioned (their two sides may be two targets), after the measurements
COMPARISONS = [interleaved_comparisons]
DOWNSTREAM = [inference_results, failure_patterns, performance_predictor, predictions, hardware_recommendations,
              regression_report, comparison_report]
#: the benchmark planner's round (docs/planner.md): unpartitioned (one plan covers every target of this host), in
#: the "predict" group, so no measurement schedule or sensor selects it; planned_round_job runs it
PLANNING = [benchmark_plan, planned_runs]
ALL_ASSETS = UNPARTITIONED_UPSTREAM + MEASUREMENTS + COVERAGE + COMPARISONS + DOWNSTREAM + PLANNING
