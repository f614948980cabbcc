"""Change points in a series of measurements: E-divisive with means and a permutation test.

Written from the definitions in Matteson & James, "A Nonparametric Approach for Multiple Change Point
Analysis of Multivariate Data" (JASA 109(505), 2014), the method behind Apache Otava's and MongoDB's
performance change detection. Neither maintained Python package fits this project: MongoDB's
``signal-processing-algorithms`` 2.1.6 requires Python < 3.12 and numpy < 2, and ``apache-otava`` 0.8.0 pins
numpy 2.2.0 and scipy < 1.17 and pulls cloud and chat clients.

The rules, in one place:

* **Divergence of two samples.** For X (n values) and Y (m values) and an exponent ``alpha`` in (0, 2),
  ``E = 2/(n m) Σ|x_i - y_j|^a - 1/C(n,2) Σ_{i<k}|x_i - x_k|^a - 1/C(m,2) Σ_{j<k}|y_j - y_k|^a``: the mean
  distance between the samples less the mean distances within each. It is zero in expectation exactly
  when X and Y have the same distribution (for alpha < 2), so a change of level, spread or shape shows.
  It is scaled by the sample sizes, ``Q = n m / (n + m) · E``, so that longer segments weigh more.
* **One change point in a segment.** For every split ``tau`` (X = the segment's first ``tau`` values) and
  every end ``kappa`` (Y = the values from ``tau`` up to ``kappa``), compute Q; the split with the largest Q
  is the candidate. Letting Y stop before the segment's end finds a change that a later change would
  otherwise mask. X and Y each hold at least ``min_size`` values (2 at least: a within-sample mean needs a
  pair).
* **Several change points.** Divisive: with k - 1 change points accepted, the series is k segments; the
  candidate of each segment is found as above and the one with the largest Q is the k-th candidate.
* **Significance.** The candidate is tested by permutation: the values are shuffled within each of the k
  current segments (that is the null hypothesis: no further change inside any of them), the candidate
  search is repeated on the shuffled series, and the p-value is ``(1 + #{shuffled Q >= observed Q}) /
  (1 + permutations)``, which is never zero and keeps the test's level exact. The candidate is accepted
  when p <= ``significance`` and the search continues; the first candidate that fails stops it.
* Permutations come from a generator seeded with ``seed``: the same series always gives the same answer.
* Defaults follow the paper: alpha 1, 199 permutations, significance 0.05. The paper's minimum segment
  of 30 suits long series; a history of runs is short, so the default here is 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PERMUTATIONS = 199
DEFAULT_SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class ChangePoint:
    """``index`` is the position of the first value after the change (0-based)."""

    index: int
    statistic: float
    p_value: float


@dataclass(frozen=True)
class EDivisiveResult:
    change_points: list[ChangePoint]  # accepted, in order of position
    rejected: ChangePoint | None  # the last candidate tested, which was not significant (None if none was)


def _distance_matrix(values: np.ndarray, alpha: float) -> np.ndarray:
    return np.abs(values[:, None] - values[None, :]) ** alpha


def divergence(x: np.ndarray | list[float], y: np.ndarray | list[float], alpha: float = 1.0) -> float:
    """The scaled divergence Q of two samples (see the module docstring); each needs two values at least."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n, m = x.size, y.size
    if n < 2 or m < 2:
        raise ValueError("divergence needs at least two values in each sample")
    between = np.abs(x[:, None] - y[None, :]) ** alpha
    within_x = _distance_matrix(x, alpha)
    within_y = _distance_matrix(y, alpha)
    e = 2.0 * between.mean() - within_x.sum() / (n * (n - 1)) - within_y.sum() / (m * (m - 1))
    return n * m / (n + m) * float(e)


def best_split(series: np.ndarray | list[float], *, alpha: float = 1.0, min_size: int = 2) -> tuple[int, float] | None:
    """E-divisive's estimate of one change in ``series``: (index of the first value after it, Q), untested.

    None when the series is too short for two segments of ``min_size``.
    """
    values = np.asarray(series, dtype=float)
    return _best_split(_distance_matrix(values, alpha), min_size)


def _best_split(d: np.ndarray, min_size: int) -> tuple[int, float] | None:
    """The split ``tau`` with the largest Q over all ``kappa`` in a segment whose distances are ``d``."""
    length = d.shape[0]
    if length < 2 * min_size:
        return None
    # prefix[a, b] = sum of d[:a, :b]: every block sum below is four lookups, so the search is O(L^2).
    prefix = np.zeros((length + 1, length + 1))
    prefix[1:, 1:] = d.cumsum(axis=0).cumsum(axis=1)
    taus = np.arange(min_size, length - min_size + 1)
    kappas = np.arange(2 * min_size, length + 1)
    tau, kappa = np.meshgrid(taus, kappas, indexing="ij")
    n = tau.astype(float)
    m = (kappa - tau).astype(float)
    valid = m >= min_size
    m_safe = np.where(valid, m, 2.0)
    between = prefix[tau, kappa] - prefix[tau, tau]  # rows [0, tau) x columns [tau, kappa)
    within_x = prefix[tau, tau]  # both orders of each pair: twice the pair sum
    within_y = prefix[kappa, kappa] - 2.0 * prefix[tau, kappa] + prefix[tau, tau]
    e = 2.0 * between / (n * m_safe) - within_x / (n * (n - 1)) - within_y / (m_safe * (m_safe - 1))
    q = np.where(valid, n * m_safe / (n + m_safe) * e, -np.inf)
    best = np.unravel_index(int(np.argmax(q)), q.shape)
    return int(taus[best[0]]), float(q[best])


def _best_candidate(d: np.ndarray, bounds: list[int], min_size: int) -> tuple[int, float] | None:
    """Across the segments between ``bounds``, the split (absolute index) with the largest Q."""
    best: tuple[int, float] | None = None
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        found = _best_split(d[start:end, start:end], min_size)
        if found and (best is None or found[1] > best[1]):
            best = (start + found[0], found[1])
    return best


def _permutation_p_value(values: np.ndarray, bounds: list[int], observed: float, alpha: float, min_size: int,
                         permutations: int, rng: np.random.Generator) -> float:
    at_least = 0
    for _ in range(permutations):
        shuffled = values.copy()
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            shuffled[start:end] = rng.permutation(shuffled[start:end])
        candidate = _best_candidate(_distance_matrix(shuffled, alpha), bounds, min_size)
        if candidate is not None and candidate[1] >= observed:
            at_least += 1
    return (1 + at_least) / (1 + permutations)


def e_divisive(
    series: np.ndarray | list[float],
    *,
    alpha: float = 1.0,
    min_size: int = 2,
    significance: float = DEFAULT_SIGNIFICANCE,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> EDivisiveResult:
    """Significant change points of a univariate series (see the module docstring for the rules)."""
    values = np.asarray(series, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"e_divisive takes a one-dimensional series, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("e_divisive needs finite values (drop missing runs first)")
    if not 0 < alpha < 2:
        raise ValueError(f"alpha must be in (0, 2), got {alpha}")
    if min_size < 2:
        raise ValueError(f"min_size must be at least 2, got {min_size}")
    if not 0 < significance < 1 or permutations < 1:
        raise ValueError("significance must be in (0, 1) and permutations at least 1")
    rng = np.random.default_rng(seed)
    d = _distance_matrix(values, alpha)
    bounds = [0, values.size]
    accepted: list[ChangePoint] = []
    while True:
        candidate = _best_candidate(d, bounds, min_size)
        if candidate is None:
            return EDivisiveResult(sorted(accepted, key=lambda c: c.index), None)
        index, statistic = candidate
        p_value = _permutation_p_value(values, bounds, statistic, alpha, min_size, permutations, rng)
        point = ChangePoint(index, statistic, p_value)
        if p_value > significance:
            return EDivisiveResult(sorted(accepted, key=lambda c: c.index), point)
        accepted.append(point)
        bounds = sorted([*bounds, index])
