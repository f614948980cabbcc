"""Assets, one module per stage. They stay thin: the work lives in bench/, warehouse/, predict/, report/."""

from hwbench_pipeline.assets.catalog import model_catalog
from hwbench_pipeline.assets.hardware import hardware_targets
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.recommendations import hardware_recommendations
from hwbench_pipeline.assets.reports import regression_report
from hwbench_pipeline.assets.runs import inference_runs
from hwbench_pipeline.assets.tables import inference_results

ALL_ASSETS = [
    model_catalog,
    hardware_targets,
    inference_runs,
    inference_results,
    performance_predictor,
    hardware_recommendations,
    regression_report,
]

UNPARTITIONED_UPSTREAM = [model_catalog, hardware_targets]
DOWNSTREAM = [inference_results, performance_predictor, hardware_recommendations, regression_report]
