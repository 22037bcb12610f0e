"""Statistics over a handful of seeds: interquartile mean and stratified bootstrap intervals.

RL benchmarks have few seeds per configuration, so a plain mean is at the mercy of one outlier
seed and a point estimate without an interval says little. Following Agarwal et al. 2021,
"Deep RL at the Edge of the Statistical Precipice" (rliable), results are reported as the
interquartile mean (IQM) with a stratified percentile bootstrap interval.
"""

from typing import Callable, Sequence, Tuple

import numpy as np
from scipy import stats


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed from each end).

    More robust to an outlier seed than the mean, more statistically efficient than the median.
    Same definition as rliable (``scipy.stats.trim_mean(values, 0.25)``); with fewer than four
    values nothing is trimmed and it is the plain mean.
    """
    return float(stats.trim_mean(np.asarray(values, dtype=np.float64), 0.25))


def bootstrap_interval(
    samples: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Tuple[float, float]:
    """Stratified percentile bootstrap interval of ``statistic`` over the pooled ``samples``.

    Each array in ``samples`` is one stratum (e.g. the seeds of one environment) and is resampled
    with replacement within itself, so every resample keeps the strata sizes; ``statistic`` is
    applied to the concatenation of the resampled strata. Stratification is what rliable
    (Agarwal et al. 2021) recommends: pooling first would let a resample draw e.g. more runs of
    an easy environment than there are, widening the interval for no reason.

    A stratum with a single distinct value is the same in every resample; it is held fixed
    (scipy refuses one-value samples). Where no stratum varies the interval is the point value.
    """
    strata = [np.asarray(sample, dtype=np.float64).ravel() for sample in samples]
    if not strata or any(stratum.size == 0 for stratum in strata):
        raise ValueError("bootstrap_interval needs at least one sample, and no empty sample")
    varying = [stratum for stratum in strata if np.ptp(stratum) > 0]
    fixed = [stratum for stratum in strata if np.ptp(stratum) == 0]
    if not varying:
        value = float(statistic(np.concatenate(strata)))
        return value, value

    def pooled_statistic(*resampled_strata: np.ndarray) -> float:
        return statistic(np.concatenate(resampled_strata + tuple(fixed)))

    result = stats.bootstrap(
        tuple(varying),
        pooled_statistic,
        n_resamples=resamples,
        vectorized=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y): the chance that a run of X scores above a run of Y, ties counting half
    (the Mann-Whitney U statistic over ``len(x) * len(y)``; rliable's probability of improvement
    on one task)."""
    a = np.asarray(x, dtype=np.float64)[:, None]
    b = np.asarray(y, dtype=np.float64)[None, :]
    if a.size == 0 or b.size == 0:
        raise ValueError("probability_of_improvement needs runs of both methods")
    return float(np.mean((a > b) + 0.5 * (a == b)))


def probability_of_improvement_interval(
    x: Sequence[float], y: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Tuple[float, float]:
    """Percentile bootstrap interval of ``probability_of_improvement``, each method's runs
    resampled with replacement on their own (rliable's two-sample bootstrap)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = [probability_of_improvement(rng.choice(a, size=a.size), rng.choice(b, size=b.size)) for _ in range(resamples)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
