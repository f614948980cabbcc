"""E-divisive on generated series: these test the algorithm, not a measurement, so seeded random series serve."""

import numpy as np
import pytest

from hwbench_pipeline.report.changepoints import best_split, divergence, e_divisive


def _brute_force_split(values, min_size, alpha):
    best = None
    for tau in range(min_size, len(values) - min_size + 1):
        for kappa in range(tau + min_size, len(values) + 1):
            q = divergence(values[:tau], values[tau:kappa], alpha)
            if best is None or q > best[1] + 1e-12:
                best = (tau, q)
    return best


def test_fast_split_search_equals_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(40):
        length = int(rng.integers(4, 14))
        min_size = int(rng.integers(2, length // 2 + 1))
        alpha = float(rng.uniform(0.3, 1.9))
        values = rng.normal(size=length) + (np.arange(length) >= length // 3) * rng.normal(0, 2)
        found, expected = best_split(values, alpha=alpha, min_size=min_size), _brute_force_split(values, min_size,
                                                                                                 alpha)
        assert found[0] == expected[0] and found[1] == pytest.approx(expected[1], rel=1e-9, abs=1e-12)


def test_divergence_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    assert abs(divergence(x, y)) < 2.0 < divergence(x, y + 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_a_step_is_found_at_its_index(seed):
    rng = np.random.default_rng(seed)
    series = np.r_[rng.normal(100, 2, 25), rng.normal(110, 2, 15)]  # a 10 % step at index 25, noise sd 2 %
    result = e_divisive(series, seed=seed)
    assert [c.index for c in result.change_points] == [25]
    assert result.change_points[0].p_value <= 0.05


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_noisy_series_has_no_change_point(seed):
    rng = np.random.default_rng(100 + seed)
    result = e_divisive(rng.normal(100, 2, 40), seed=seed)
    assert result.change_points == []
    assert result.rejected is not None and result.rejected.p_value > 0.05


def test_two_steps_are_both_found():
    rng = np.random.default_rng(7)
    series = np.r_[rng.normal(10, 0.2, 15), rng.normal(12, 0.2, 10), rng.normal(10, 0.2, 15)]
    assert [c.index for c in e_divisive(series).change_points] == [15, 25]


def test_three_runs_on_a_new_level_are_enough_and_the_result_is_reproducible():
    rng = np.random.default_rng(11)
    series = np.r_[rng.normal(10, 0.3, 6), rng.normal(18, 0.3, 3)]
    first, again = e_divisive(series, seed=4), e_divisive(series, seed=4)
    assert [c.index for c in first.change_points] == [6] and first == again


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="finite"):
        e_divisive([1.0, float("nan"), 2.0, 3.0])
    with pytest.raises(ValueError, match="min_size"):
        e_divisive([1.0, 2.0, 3.0, 4.0], min_size=1)
    with pytest.raises(ValueError, match="alpha"):
        e_divisive([1.0, 2.0, 3.0, 4.0], alpha=2.0)
