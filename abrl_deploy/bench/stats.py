"""Latency statistics, the bootstrap confidence interval of a latency ratio, and the verdict on a
claimed reduction. Pure numpy/scipy: no model runs here, so tests check it against known samples."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

# numpy's default percentile estimator (Hyndman & Fan type 7); reports name it with the count.
PERCENTILE_METHOD = "linear"
PERCENTILE_ESTIMATOR = "numpy.percentile method='linear' (Hyndman & Fan type 7)"
HIGH_CV = 0.10  # a coefficient of variation above this gets a warning
VERDICTS = ("SUPPORTED", "REFUTED", "INCONCLUSIVE")
STATISTICS = {"p50": 50.0, "p90": 90.0}


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds for one batch size."""

    count: int
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_ips: float  # images per second: batch / mean latency

    @property
    def high_variation(self) -> bool:
        return self.cv > HIGH_CV

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def latency_stats(samples_ms: np.ndarray, batch: int) -> LatencyStats:
    """Stats of ``samples_ms`` (one latency per call); std is the sample std (ddof=1)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need at least 2 latency samples, got {x.size}")
    p50, p90, p95, p99 = np.percentile(x, [50, 90, 95, 99], method=PERCENTILE_METHOD)
    mean, std = float(x.mean()), float(x.std(ddof=1))
    return LatencyStats(
        count=len(x), mean_ms=mean, std_ms=std, cv=std / mean, min_ms=float(x.min()),
        p50_ms=float(p50), p90_ms=float(p90), p95_ms=float(p95), p99_ms=float(p99),
        max_ms=float(x.max()), throughput_ips=1000.0 * batch / mean,
    )  # fmt: skip


@dataclass(frozen=True)
class RatioCI:
    """latency(model) / latency(baseline) for one statistic, with its bootstrap interval."""

    statistic: str  # "p50" or "p90"
    ratio: float
    low: float
    high: float
    confidence: float
    method: str
    blocks: int
    resamples: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def ratio_ci(
    model_blocks: np.ndarray,
    baseline_blocks: np.ndarray,
    statistic: str = "p50",
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> RatioCI:
    """Bootstrap over blocks: ``model_blocks[i]`` and ``baseline_blocks[i]`` ran in the same round
    of the interleaved schedule, so they are resampled together (paired), and the ratio of the
    pooled percentiles is recomputed on each resample. Arrays are (blocks, calls per block)."""
    from scipy.stats import bootstrap

    a, b = np.asarray(model_blocks, np.float64), np.asarray(baseline_blocks, np.float64)
    if a.ndim != 2 or a.shape[0] != b.shape[0] or a.shape[0] < 3:
        raise ValueError(f"need paired (blocks, calls) arrays with >= 3 blocks, got {a.shape}")
    q = STATISTICS[statistic]

    def ratio(idx: np.ndarray) -> float:
        idx = idx.astype(int)
        return np.percentile(a[idx].ravel(), q) / np.percentile(b[idx].ravel(), q)

    blocks = np.arange(a.shape[0])
    rng = np.random.default_rng(seed)
    method = "BCa"
    with warnings.catch_warnings():  # a degenerate BCa is detected below, not printed
        warnings.simplefilter("ignore")
        res = bootstrap((blocks,), ratio, vectorized=False, n_resamples=resamples,
                        confidence_level=confidence, method="BCa", random_state=rng)  # fmt: skip
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        # BCa is undefined when every resample gives one value (e.g. identical blocks).
        method = "percentile"
        res = bootstrap((blocks,), ratio, vectorized=False, n_resamples=resamples,
                        confidence_level=confidence, method="percentile",
                        random_state=np.random.default_rng(seed))  # fmt: skip
        low, high = res.confidence_interval
    return RatioCI(statistic, float(ratio(blocks)), float(low), float(high), confidence,
                   method, a.shape[0], resamples)  # fmt: skip


def verdict(low: float, high: float, claim: float) -> str:
    """The paper claims latency(model) <= (1 - claim) x latency(baseline).

    SUPPORTED if the whole interval is at or below 1 - claim, REFUTED if all of it is above,
    INCONCLUSIVE if it straddles the threshold.
    """
    if not 0 <= claim < 1:
        raise ValueError(f"claim must be a reduction in [0, 1), got {claim}")
    if low > high:
        raise ValueError(f"interval low {low} > high {high}")
    threshold = 1.0 - claim
    if high <= threshold:
        return "SUPPORTED"
    if low > threshold:
        return "REFUTED"
    return "INCONCLUSIVE"
