"""The fixture of real measurements (tests/predict/fixtures/README.md) and the frames built from it."""

import polars as pl
import pytest
from fixture_data import FIXTURES

from hwbench_pipeline.predict.features import training_frame
from hwbench_pipeline.predict.predictor import Predictor


@pytest.fixture(scope="session")
def measurements() -> pl.DataFrame:
    return pl.read_parquet(FIXTURES / "measurements.parquet")


@pytest.fixture(scope="session")
def hardware() -> pl.DataFrame:
    return pl.read_parquet(FIXTURES / "hardware_targets.parquet")


@pytest.fixture(scope="session")
def frame(measurements, hardware) -> pl.DataFrame:
    """Measured rows (status ok) as the predictor's feature frame."""
    return training_frame(measurements.with_columns(mode=pl.lit("inference")), None, hardware)


@pytest.fixture(scope="session")
def predictor(frame) -> Predictor:
    """The predictor trained on every fixture row, intervals calibrated."""
    return Predictor.fit(frame)
