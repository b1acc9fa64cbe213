"""The choice rule, on measured rows: pure functions, so the rule is tested apart from timing.

Eligible: a shippable row whose top-1 on the select images (half of the test split) is at most
``max_drop`` points below the reference's (PyTorch eager fp32 on the same images). Chosen: the
eligible row with the lowest median latency. The frontier: rows no other row beats on both median
latency and select top-1 (lower-or-equal latency and higher-or-equal top-1, one strictly).
"""

from __future__ import annotations

from typing import Any


def mark_eligible(rows: list[dict[str, Any]], reference_top1: float, max_drop: float) -> None:
    for r in rows:
        r["select_drop"] = reference_top1 - r["select"]["top1"]
        # 1e-9: a drop of exactly max_drop passes despite float rounding of percentages
        r["eligible"] = bool(r["shippable"] and r["select_drop"] <= max_drop + 1e-9)


def mark_frontier(rows: list[dict[str, Any]]) -> None:
    def beats(a: dict, b: dict) -> bool:
        la, lb = a["latency"]["p50_ms"], b["latency"]["p50_ms"]
        ta, tb = a["select"]["top1"], b["select"]["top1"]
        return la <= lb and ta >= tb and (la < lb or ta > tb)

    for r in rows:
        r["frontier"] = not any(beats(o, r) for o in rows if o is not r)


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest eligible row (marked ``chosen``), or None when no row is eligible."""
    eligible = [r for r in rows if r["eligible"]]
    best = min(eligible, key=lambda r: r["latency"]["p50_ms"], default=None)
    for r in rows:
        r["chosen"] = r is best
    return best
