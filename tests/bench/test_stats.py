"""Latency statistics against numpy and hand values; the bootstrap interval and the verdict on
constructed ratios (each of the three outcomes)."""

import numpy as np
import pytest

from abrl_deploy.bench.stats import latency_stats, ratio_ci, verdict


def test_latency_stats_on_known_samples():
    s = latency_stats(np.arange(1, 101, dtype=float), batch=64)
    # type-7 percentiles of 1..100: 1 + q * 99
    assert (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms) == pytest.approx((50.5, 90.1, 95.05, 99.01))
    assert s.count == 100 and s.min_ms == 1 and s.max_ms == 100
    assert s.mean_ms == pytest.approx(50.5)
    assert s.std_ms == pytest.approx(29.011491975882016)  # sample std, ddof=1
    assert s.cv == pytest.approx(29.011491975882016 / 50.5)
    assert s.throughput_ips == pytest.approx(64 / 0.0505)


def test_latency_stats_match_numpy_on_random_samples():
    x = np.random.default_rng(3).lognormal(3, 0.4, size=997)
    s = latency_stats(x, batch=8)
    for q, got in ((50, s.p50_ms), (90, s.p90_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(x, q))
    assert s.std_ms == pytest.approx(np.std(x, ddof=1))
    assert s.high_variation  # CV ~ 0.4


def test_latency_stats_need_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        latency_stats(np.array([1.0]), batch=1)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.70, 0.80, "SUPPORTED"),
        (0.70, 0.85, "SUPPORTED"),  # the boundary: hi <= 1 - r
        (0.80, 0.90, "INCONCLUSIVE"),
        (0.85, 0.95, "INCONCLUSIVE"),  # lo must be strictly above 1 - r to refute
        (0.86, 1.05, "REFUTED"),
    ],
)
def test_verdict_on_constructed_intervals(low, high, expected):
    assert verdict(low, high, 0.15) == expected


def test_verdict_rejects_a_bad_claim():
    with pytest.raises(ValueError, match="claim"):
        verdict(0.5, 0.6, 1.5)


def _blocks(center, spread, seed, shape=(20, 5)):
    return np.random.default_rng(seed).normal(center, spread, size=shape)


@pytest.mark.parametrize(
    ("model_ms", "expected"),
    [(60.0, "SUPPORTED"), (100.0, "REFUTED"), (85.0, "INCONCLUSIVE")],
)
def test_ratio_ci_and_verdict_on_constructed_latencies(model_ms, expected):
    baseline = _blocks(100.0, 3.0, seed=1)
    model = _blocks(model_ms, 3.0 * model_ms / 100, seed=2)
    for statistic in ("p50", "p90"):
        ci = ratio_ci(model, baseline, statistic)
        true = model_ms / 100
        assert ci.low < ci.ratio < ci.high
        assert ci.low < true * 1.03 and ci.high > true * 0.97  # covers the true ratio
        assert ci.high - ci.low < 0.1
        assert verdict(ci.low, ci.high, 0.15) == expected


def test_ratio_ci_pools_the_percentile_over_blocks():
    model = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    baseline = np.full((3, 2), 2.0)
    ci = ratio_ci(model, baseline, "p90", resamples=200)
    assert ci.ratio == pytest.approx(np.percentile([1, 2, 3, 4, 5, 6], 90) / 2)


def test_ratio_ci_of_identical_blocks_falls_back_to_percentile():
    same = np.ones((5, 3))
    ci = ratio_ci(same, same)
    assert (ci.ratio, ci.low, ci.high, ci.method) == (1.0, 1.0, 1.0, "percentile")


def test_ratio_ci_needs_paired_blocks():
    with pytest.raises(ValueError, match="paired"):
        ratio_ci(np.ones((5, 3)), np.ones((4, 3)))


def test_ratio_ci_is_paired_over_blocks():
    """Drift shared by the model's and the baseline's block of one round cancels in the ratio:
    the interval stays narrow even though the latency moves 3x between rounds."""
    rng = np.random.default_rng(0)
    drift = rng.uniform(50, 150, size=(30, 1))
    baseline = drift * (1 + rng.normal(0, 0.01, (30, 5)))
    model = 0.8 * drift * (1 + rng.normal(0, 0.01, (30, 5)))
    ci = ratio_ci(model, baseline, "p50")
    assert ci.low < 0.8 < ci.high and ci.high - ci.low < 0.03
    unpaired = ratio_ci(model, baseline[rng.permutation(30)], "p50")
    assert unpaired.high - unpaired.low > 3 * (ci.high - ci.low)  # what pairing buys
