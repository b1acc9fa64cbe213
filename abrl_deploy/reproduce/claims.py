"""Verdicts on the paper's claims, each a pure function of measured numbers with its rule stated.

Every verdict is SUPPORTED, REFUTED or INCONCLUSIVE and comes with the interval it was read from,
so a reader can check it. The rules (also written into reproduce.md):

- accuracy gain: the paired differences ABRL − baseline over seeds (same seed = same split);
  mean and a Student-t interval. SUPPORTED if low >= 2 points, REFUTED if high < 2, else
  INCONCLUSIVE; fewer than 2 seeds gives no spread, hence INCONCLUSIVE.
- latency: ``abrl bench``'s rule on the latency ratio's bootstrap interval (bench/stats.py).
- penalty overhead: the mean over rounds of time(λ>0)/time(λ=0) − 1, Student-t interval over
  rounds. "Roughly 3%" is read as the band [0%, 6%]: SUPPORTED if the interval lies inside it,
  REFUTED if it lies wholly outside, else INCONCLUSIVE.
- memory: saved-for-backward bytes are counted, not sampled (no spread). Relative growth
  g = fitted slope × (K_max − K_min) / bytes(K_min). SUPPORTED if g_implicit <= 5% and
  g_unrolled >= 50%; REFUTED if g_implicit >= 50% or g_unrolled <= 5%; else INCONCLUSIVE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SUPPORTED, REFUTED, INCONCLUSIVE = "SUPPORTED", "REFUTED", "INCONCLUSIVE"

GAIN_RULE = (
    "paired differences ABRL - baseline over seeds, mean and Student-t {conf:.0%} interval: "
    "SUPPORTED if low >= {floor:g} points, REFUTED if high < {floor:g}, else INCONCLUSIVE "
    "(always INCONCLUSIVE with fewer than 2 seeds)"
)
OVERHEAD_RULE = (
    "mean over rounds of time(lambda>0)/time(lambda=0) - 1, Student-t {conf:.0%} interval; "
    "'roughly 3%' read as [{lo:.0%}, {hi:.0%}]: SUPPORTED if the interval lies inside, REFUTED "
    "if wholly outside, else INCONCLUSIVE"
)
MEMORY_RULE = (
    "relative growth g = slope x (K_max - K_min) / bytes(K_min) of saved-for-backward bytes: "
    "SUPPORTED if g_implicit <= {flat:.0%} and g_unrolled >= {grows:.0%}; REFUTED if "
    "g_implicit >= {grows:.0%} or g_unrolled <= {flat:.0%}; else INCONCLUSIVE (bytes are "
    "counted exactly: no sampling spread)"
)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    x = np.asarray(values, np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def gain_verdict(low: float, high: float, floor: float = 2.0) -> str:
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low >= floor:
        return SUPPORTED
    if high < floor:
        return REFUTED
    return INCONCLUSIVE


def accuracy_gain(
    abrl: dict[int, float],
    baseline: dict[int, float],
    *,
    floor: float = 2.0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """ABRL's top-1 gain over a baseline, paired by seed (only the seeds both have)."""
    seeds = sorted(set(abrl) & set(baseline))
    diffs = [abrl[s] - baseline[s] for s in seeds]
    if not diffs:
        return {"seeds": [], "differences": [], "mean": math.nan, "low": math.nan,
                "high": math.nan, "verdict": INCONCLUSIVE}  # fmt: skip
    mean, low, high = t_interval(diffs, confidence)
    return {"seeds": seeds, "differences": diffs, "mean": mean, "low": low, "high": high,
            "verdict": gain_verdict(low, high, floor)}  # fmt: skip


def band_verdict(low: float, high: float, band: tuple[float, float]) -> str:
    """SUPPORTED if [low, high] lies inside ``band``, REFUTED if it misses it, else INCONCLUSIVE."""
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if band[0] <= low and high <= band[1]:
        return SUPPORTED
    if high < band[0] or low > band[1]:
        return REFUTED
    return INCONCLUSIVE


def penalty_overhead(
    with_penalty: Sequence[float],
    without: Sequence[float],
    *,
    band: tuple[float, float] = (0.0, 0.06),
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per-round step times (seconds, rounds interleaved) of ABRL with λ > 0 and with λ = 0."""
    ratios = [a / b - 1 for a, b in zip(with_penalty, without, strict=True)]
    mean, low, high = t_interval(ratios, confidence)
    return {"per_round": ratios, "mean": mean, "low": low, "high": high, "band": list(band),
            "verdict": band_verdict(low, high, band)}  # fmt: skip


def relative_growth(ks: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope over K, times the K range, relative to the value at the smallest K."""
    k, v = np.asarray(ks, np.float64), np.asarray(values, np.float64)
    slope = float(np.polyfit(k, v, 1)[0])
    return slope * float(k.max() - k.min()) / float(v[np.argmin(k)])


def memory_verdict(
    ks: Sequence[int],
    implicit: Sequence[float],
    unrolled: Sequence[float],
    *,
    flat: float = 0.05,
    grows: float = 0.5,
) -> dict[str, Any]:
    g_imp, g_unr = relative_growth(ks, implicit), relative_growth(ks, unrolled)
    if g_imp <= flat and g_unr >= grows:
        result = SUPPORTED
    elif g_imp >= grows or g_unr <= flat:
        result = REFUTED
    else:
        result = INCONCLUSIVE
    return {"ks": list(ks), "implicit": list(implicit), "unrolled": list(unrolled),
            "growth_implicit": g_imp, "growth_unrolled": g_unr, "verdict": result}  # fmt: skip


def latency_rows(bench_report: dict[str, Any]) -> list[dict[str, Any]]:
    """The bench's comparisons, one row per backend and statistic, with its verdict."""
    keep = ("backend", "statistic", "ratio", "low", "high", "reduction", "threshold", "verdict")
    return [{k: c[k] for k in keep} for c in bench_report.get("comparisons", [])]


def overall(verdicts: Sequence[str]) -> str:
    """One word for several verdicts: all SUPPORTED, any REFUTED, or else INCONCLUSIVE."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == REFUTED for v in verdicts):
        return REFUTED
    return INCONCLUSIVE
