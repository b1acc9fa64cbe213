"""The report's figures (matplotlib, Agg), each written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.atomic import atomic_write_bytes


def write_plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {"accuracy.png": _accuracy, "curves.png": _curves}
    if "latency" in report.get("claims", {}):
        figures["latency.png"] = _latency
    for name, draw in figures.items():
        fig = draw(plt, report)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out / name, buf.getvalue())
    return list(figures)


def _accuracy(plt, r: dict[str, Any]):
    """Top-1 per method and dataset, error bars one std over seeds; the ablation on the right."""
    t1 = r["heads"]["refit"]["table1"]  # the like-for-like head
    groups = [(d, t1, list(t1)) for d in r["datasets"]]
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(4 * (len(groups) + 1), 3.5))
    for ax, (d, table, variants) in zip(axes, groups, strict=False):
        _bars(ax, variants, [table[v][d] for v in variants], f"Table 1: {d}")
    t2 = r["heads"]["refit"]["table2"]
    _bars(axes[-1], list(t2), [t2[v] for v in t2], f"Table 2: {r['ablation_dataset']}")
    return fig


def _bars(ax, names: list[str], stats: list[dict[str, Any]], title: str) -> None:
    means = [s["mean"] for s in stats]
    errs = [0.0 if not s["n"] or np.isnan(s["std"]) else s["std"] for s in stats]
    ax.bar(range(len(names)), means, yerr=errs, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)


def _curves(plt, r: dict[str, Any]):
    """Test top-1 per epoch from each run's metrics.jsonl, one line per run. For ABRL this is
    the head its inner loop holds; the refit of the saved head comes after the last epoch."""
    fig, axes = plt.subplots(1, len(r["datasets"]), figsize=(5 * len(r["datasets"]), 3.5),
                             squeeze=False)  # fmt: skip
    colours: dict[str, str] = {}
    for ax, d in zip(axes[0], r["datasets"], strict=True):
        for run in (x for x in r["runs"] if x["run"].startswith(f"{d}/")):
            variant = run["run"].split("/")[1]
            colour = colours.setdefault(variant, f"C{len(colours)}")
            pts = [(p["epoch"], p["test_top1"]) for p in run["curve"] if p["test_top1"] is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), color=colour, marker=".", alpha=0.8,
                        label=variant if variant not in ax.get_legend_handles_labels()[1]
                        else None)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 (%) after each epoch")
        ax.set_title(d)
        ax.legend(fontsize=7)
    return fig


def _latency(plt, r: dict[str, Any]):
    """p50 latency per backend: ABRL next to fine-tune."""
    rows = r["claims"]["latency"]["results"]
    backends = sorted({x["backend"] for x in rows})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    width = 0.4
    for i, model in enumerate(sorted({x["model"] for x in rows})):
        vals = [next((x["p50_ms"] for x in rows if x["model"] == model and x["backend"] == b),
                     0.0) for b in backends]  # fmt: skip
        ax.bar(np.arange(len(backends)) + i * width, vals, width, label=model)
    ax.set_xticks(np.arange(len(backends)) + width / 2, backends)
    ax.set_ylabel("p50 latency, batch 64 (ms)")
    ax.legend(fontsize=7)
    return fig
