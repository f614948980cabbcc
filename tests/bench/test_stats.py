import numpy as np
import pytest

from hwbench_pipeline.bench.trackers.stats import (
    StoppingRule,
    between_process_interval,
    median_ci,
    median_ci_relative_halfwidth,
    summarize,
)


def test_median_ci_covers_true_median_about_95_percent():
    # Sample streams are synthetic inputs here: the rule under test must hold for any distribution.
    rng = np.random.default_rng(1)
    true_median = np.log(2)  # median of an exponential(1)
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_ci(rng.exponential(1.0, size=60))
        hits += lo <= true_median <= hi
    assert 0.93 <= hits / trials <= 0.985


def test_rule_stops_on_ci_for_quiet_stream_and_on_time_for_noisy_one():
    rule = StoppingRule(ci_target=0.01, min_samples=10, max_seconds=1.0)
    rng = np.random.default_rng(2)
    quiet = list(10 + rng.normal(0, 0.01, size=40))
    reasons = [rule.stop_reason(quiet[:n], elapsed_s=0.1) for n in range(1, 41)]
    first = next(i for i, r in enumerate(reasons, start=1) if r)
    assert reasons[first - 1] == "ci_reached" and first >= 10

    noisy = list(10 * rng.lognormal(0, 0.5, size=40))
    assert rule.stop_reason(noisy, elapsed_s=0.5) is None
    assert rule.stop_reason(noisy, elapsed_s=1.5) == "time_cap"
    assert median_ci_relative_halfwidth(noisy) > 0.01


def test_time_cap_still_needs_three_samples():
    rule = StoppingRule(max_seconds=0.1)
    assert rule.stop_reason([5.0, 6.0], elapsed_s=10) is None
    assert rule.stop_reason([5.0, 6.0, 7.0], elapsed_s=10) == "time_cap"


def test_warmup_waits_for_stable_latency():
    rule = StoppingRule(warmup_window=5, warmup_tolerance=0.05, warmup_max_seconds=100)
    settling = [50, 40, 30, 20, 15, 12, 11, 10, 10, 10]
    assert not rule.warmup_done(settling, elapsed_s=1)
    assert rule.warmup_done(settling + [10] * 5, elapsed_s=1)
    assert rule.warmup_done([50.0], elapsed_s=101)


def test_slow_calls_warm_up_in_shorter_windows():
    rule = StoppingRule(warmup_window=5, warmup_window_seconds=1.0, warmup_tolerance=0.05, warmup_max_seconds=100)
    # 500 ms calls: two fit a second, so two windows of two calls decide
    assert rule.warmup_window_calls([900, 520, 510]) == 2
    assert not rule.warmup_done([900, 520, 510, 515], elapsed_s=2.4)
    assert rule.warmup_done([900, 520, 510, 515, 505], elapsed_s=2.9)
    # 300 ms calls: four fit a second; 10 ms calls keep the full window of five
    assert rule.warmup_window_calls([300.0] * 4) == 4
    assert rule.warmup_window_calls([10.0] * 4) == 5


def test_summarize_orders_percentiles_and_rejects_empty():
    s = summarize([1, 2, 3, 4, 100])
    assert s["p50_ms"] == 3 and s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["median_ci_low_ms"] <= s["p50_ms"] <= s["median_ci_high_ms"]
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize("kwargs", [{"ci_target": 0}, {"ci_target": 1.5}, {"min_samples": 1}, {"max_seconds": 0},
                                    {"processes": 0}, {"processes": 4, "max_processes": 3}])
def test_rule_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        StoppingRule(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"ci_target": float("nan")}, "ci_target must be a finite number, got nan"),
    ({"max_seconds": float("inf")}, "max_seconds must be a finite number, got inf"),
    ({"warmup_max_seconds": float("nan")}, "warmup_max_seconds must be a finite number, got nan"),
    ({"max_seconds": 10**400}, "max_seconds must be a finite number"),
    ({"processes": True}, "processes must be an integer, got True"),
    ({"min_samples": 10.0}, "min_samples must be an integer, got 10.0"),
    ({"max_samples": "100"}, "max_samples must be an integer, got '100'"),
    ({"max_samples": 5}, "max_samples must be at least min_samples (10), got 5"),
    ({"warmup_min_calls": -1}, "warmup_min_calls must be zero or more, got -1"),
    ({"warmup_window": 0}, "warmup_window must be at least 1, got 0"),
    ({"warmup_window_seconds": 0}, "warmup_window_seconds must be positive, got 0"),
    ({"warmup_tolerance": 1.5}, "warmup_tolerance must be between 0 and 1, got 1.5"),
    ({"warmup_max_seconds": -1}, "warmup_max_seconds must be zero or more, got -1"),
])
def test_rule_names_the_setting_and_value_it_refuses(kwargs, message):
    with pytest.raises(ValueError) as refused:
        StoppingRule(**kwargs)
    assert message in str(refused.value)


def test_rule_keeps_accepting_the_settings_it_accepted():
    rule = StoppingRule(ci_target=0.5, min_samples=3, max_samples=3, max_seconds=1, warmup_min_calls=0,
                        warmup_window=1, warmup_window_seconds=0.01, warmup_tolerance=0, warmup_max_seconds=0)
    assert rule.per_process().max_seconds == 1 / 6


@pytest.mark.parametrize("k", [3, 5, 6, 9, 15])
def test_between_process_interval_covers_the_true_median_as_often_as_it_states(k):
    # synthetic process medians from a skewed distribution: the interval is distribution-free
    rng = np.random.default_rng(k)
    true_median = np.exp(0.0)  # of a lognormal(0, 0.3)
    trials, hits, stated = 4000, 0, None
    for _ in range(trials):
        lo, hi, stated = between_process_interval(rng.lognormal(0.0, 0.3, size=k))
        hits += lo <= true_median <= hi
    assert abs(hits / trials - stated) < 0.03
    assert stated >= 0.95 or (k < 6 and stated == pytest.approx(1 - 2 ** (1 - k)))


def test_between_process_interval_narrows_to_inner_order_statistics_with_more_processes():
    medians = [float(v) for v in range(1, 16)]
    lo, hi, coverage = between_process_interval(medians)
    assert (lo, hi) == (4.0, 12.0) and coverage >= 0.95  # ranks 4 and 12 of 15
    assert between_process_interval([7.0]) == (7.0, 7.0, 0.0)
    with pytest.raises(ValueError):
        between_process_interval([])


def test_processes_stop_when_enough_undisturbed_ones_agree_else_at_the_cap():
    rule = StoppingRule(ci_target=0.02, processes=3, max_processes=5)
    assert rule.processes_stop_reason([10.0, 10.1], processes_run=2) is None  # too few
    assert rule.processes_stop_reason([10.0, 10.1, 9.9], processes_run=3) == "ci_reached"
    assert rule.processes_stop_reason([10.0, 11.0, 9.0], processes_run=3) is None  # ±10 %: one more
    # a disturbed process ran (4 in all) but does not count: still needs agreement among the undisturbed
    assert rule.processes_stop_reason([10.0, 11.0, 9.0], processes_run=4) is None
    assert rule.processes_stop_reason([10.0, 11.0, 9.0, 10.5], processes_run=5) == "process_cap"


def test_each_process_samples_for_its_share_of_the_time_cap():
    rule = StoppingRule(max_seconds=6.0, processes=2, max_processes=4)
    one = rule.per_process()
    assert one.max_seconds == 1.5 and (one.processes, one.max_processes) == (1, 1)
    assert one.stop_reason([5.0, 5.5, 6.0], elapsed_s=1.6) == "time_cap"
    single = StoppingRule(max_seconds=6.0, processes=1, max_processes=1)
    assert single.per_process() == single
