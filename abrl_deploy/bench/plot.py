"""The bench figure: latency distribution per model and backend, and accuracy against latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abrl_deploy.atomic import atomic_open
from abrl_deploy.errors import DependencyError


def write_plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("--plot needs matplotlib; run pip install 'abrl[bench]'") from None
    results = report["results"]
    names = [f"{r['model']}\n{r['backend']}" for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.6 * len(results) + 3))
    samples = [[x for block in r["samples_ms"] for x in block] for r in results]
    left.boxplot(samples, orientation="horizontal", showfliers=True)
    left.set_yticks(range(1, len(names) + 1), names, fontsize=8)
    left.set_xlabel(f"latency per call, ms (batch {report['protocol']['batch']})")
    left.set_title("latency distribution")
    for r in results:
        right.scatter(r["latency"]["p50_ms"], r["accuracy"]["top1"], s=40)
        right.annotate(f"{r['model']} · {r['backend']}",
                       (r["latency"]["p50_ms"], r["accuracy"]["top1"]), fontsize=7,
                       xytext=(4, 4), textcoords="offset points")  # fmt: skip
    right.margins(x=0.25, y=0.1)  # room for the labels
    right.set_xlabel("p50 latency, ms")
    right.set_ylabel("top-1 accuracy, %")
    right.set_title("accuracy against latency")
    fig.tight_layout()
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
