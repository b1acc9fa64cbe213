"""reproduce.json and reproduce.md: our tables beside the paper's, and a verdict per claim."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from abrl_deploy.atomic import atomic_write_text

from . import paper

DATASET_NAMES = {"cifar100": "CIFAR-100", "tiny-imagenet": "Tiny-ImageNet", "cub200": "CUB-200",
                 "digits": "digits", "imagefolder": "imagefolder"}  # fmt: skip


def write_all(report: dict[str, Any], out: Path) -> list[str]:
    """Write every file of the report (atomically); returns their names."""
    files = ["reproduce.json", "reproduce.md"]
    try:
        from .plots import write_plots

        files += write_plots(report, out)
    except ImportError as exc:  # matplotlib is optional (abrl[bench])
        report.setdefault("warnings", []).append(f"no plots: {exc}; pip install 'abrl[bench]'")
    report["files"] = files
    text = json.dumps(_finite(report), indent=1, default=_json, allow_nan=False)
    atomic_write_text(out / "reproduce.json", text + "\n")
    atomic_write_text(out / "reproduce.md", markdown(report))
    return files


def _json(value: Any) -> Any:
    return str(value)


def _finite(value: Any) -> Any:
    """NaN (no interval, no std with one seed) as null: reproduce.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _ms(s: dict[str, Any]) -> str:
    """mean ± std (n) of a stats dict."""
    if not s.get("n"):
        return "–"
    std = "" if math.isnan(s["std"]) else f" ± {s['std']:.1f}"
    return f"{s['mean']:.1f}{std} (n={s['n']})"


def _paper(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list | tuple):
        return f"{value[0]:.1f} ± {value[1]:.1f}"
    return f"{value:.1f}"


def _ci(row: dict[str, Any], fmt: str = "{:+.2f}") -> str:
    if math.isnan(row["low"]):
        return fmt.format(row["mean"]) + " (no interval)"
    return f"{fmt.format(row['mean'])} [{fmt.format(row['low'])}, {fmt.format(row['high'])}]"


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# abrl reproduce", "",
        f"{r['created']} · abrl {r['abrl_version']} · preset `{r['preset']}` · seeds "
        f"{', '.join(map(str, r['seeds']))} · datasets {', '.join(r['datasets'])}", "",
        "Every run starts from one preset config; a method changes only its own fields (same "
        "splits, backbone, epochs, augmentation, optimizer). Top-1 on each dataset's test split, "
        "mean ± sample std (ddof 1) over seeds. Overrides for every run: "
        f"`{r['overrides'] or 'none'}`.", "",
    ]  # fmt: skip
    lines += [_HEADS_NOTE, ""]
    for head in ("refit", "own"):
        lines += _table1(r, head) + _table2(r, head)
    lines += _claims_md(r)
    lines += ["## Runs", "", "| run | action | refit head | own head | saved | train s |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for run in r["runs"]:
        lines.append(f"| {run['run']} | {run['action']} | {_pct(run['refit_top1'])} "
                     f"| {_pct(run['own_top1'])} | {run['saved_head']} "
                     f"| {run['train_seconds']} |")  # fmt: skip
    if r.get("missing"):
        lines += ["", f"Not finished, left out (`--report-only`): {', '.join(r['missing'])}."]
    lines += ["", "Figures: accuracy.png (mean ± std over seeds), curves.png (test top-1 after "
              "each epoch from metrics.jsonl, with each method's own head; the refit comes "
              "after the last epoch), latency.png. Rerunning with `--resume` reuses every "
              "finished run and every measurement taken with the same parameters and rewrites "
              "this report; "
              "`--force` retrains and remeasures everything.", ""]  # fmt: skip
    return "\n".join(lines)


_HEADS_NOTE = (
    "Every run records two heads on its final encoder: the **refit head** (the same "
    "ridge-logistic problem on the train features, same ridge and solver, for every method) and "
    "the method's **own head** (SGD-trained with the encoder; for ABRL the head its inner loop "
    "holds). The first tables and the claim verdicts use the refit head for every method, so "
    "they compare encoders like for like; the own-head tables follow."
)
_HEAD_TITLES = {"refit": "refit head, every method", "own": "each method's own head"}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _table1(r: dict[str, Any], head_kind: str) -> list[str]:
    ds, table = r["datasets"], r["heads"][head_kind]["table1"]
    head = " | ".join(f"{DATASET_NAMES.get(d, d)} (ours) | paper" for d in ds)
    lines = [f"## Table 1: top-1 accuracy (%), {_HEAD_TITLES[head_kind]}", "",
             f"| method | {head} |", "|---|" + "---|---|" * len(ds)]  # fmt: skip
    for v, row in table.items():
        cells = " | ".join(f"{_ms(row[d])} | {_paper(row[d]['paper'])}" for d in ds)
        lines.append(f"| {paper.TABLE1_NAMES[v]} | {cells} |")
    return lines + ["", "Paper columns are the paper's Table 1 (ResNet-50, 100 epochs); '–' where "
                    "the paper has no number for that dataset.", ""]  # fmt: skip


def _table2(r: dict[str, Any], head_kind: str) -> list[str]:
    table = r["heads"][head_kind]["table2"]
    abl, full = r["ablation_dataset"], table["abrl"]["mean"]
    theirs = DATASET_NAMES[r["paper_ablation_dataset"]]
    title = f"ablation on {DATASET_NAMES.get(abl, abl)} (top-1 %), {_HEAD_TITLES[head_kind]}"
    lines = [f"## Table 2: {title}", "",
             f"| variant | ours | change vs full | paper ({theirs}) | paper change |",
             "|---|---|---|---|---|"]  # fmt: skip
    for v, row in table.items():
        change = "–" if v == "abrl" or not row["n"] else f"{row['mean'] - full:+.1f}"
        pch = "–" if v == "abrl" else f"{row['paper'] - paper.TABLE2['abrl']:+.1f}"
        lines.append(f"| {paper.TABLE2_NAMES[v]} | {_ms(row)} | {change} "
                     f"| {_paper(row['paper'])} | {pch} |")  # fmt: skip
    return lines + ["", "Variants: `--inner-solve steps --inner-problem batch` (the paper's K "
                    "steps of α on each batch before the implicit step); `--inner-problem "
                    "memory|batch` (the other inner problems); `--lambda 0`; `--hypergrad "
                    "first-order`; method `joint`.", ""]  # fmt: skip


def _claims_md(r: dict[str, Any]) -> list[str]:
    c = r["claims"]
    lines = ["## Claims", "", "| claim | measured | verdict |", "|---|---|---|"]
    g = c["accuracy_gain"]
    for row in g["rows"]:
        lines.append(f"| ABRL − {row['baseline']} on {row['dataset']}, refit heads, points "
                     "(paper: 2–4) "
                     f"| {_ci(row)} over seeds {row['seeds']} "
                     f"| **{row['verdict']}** |")  # fmt: skip
    if "latency" in c:
        for row in c["latency"]["rows"]:
            lines.append(f"| latency ABRL / fine-tune, {row['statistic']} on {row['backend']}, "
                         f"batch 64 (paper: ≤ 0.85) | {row['ratio']:.3f} [{row['low']:.3f}, "
                         f"{row['high']:.3f}] | **{row['verdict']}** |")  # fmt: skip
    if "penalty_overhead" in c:
        o = c["penalty_overhead"]
        lines.append(f"| penalty overhead, step time λ>0 vs λ=0 (paper: ~3%) "
                     f"| {_ci(o, '{:+.1%}')} over {len(o['per_round'])} rounds "
                     f"| **{o['verdict']}** |")  # fmt: skip
    if "memory" in c:
        m = c["memory"]
        ks = ", ".join(str(k) for k in m["ks"])
        imp = " / ".join(f"{v:.0f}" for v in m["implicit"])
        unr = " / ".join(f"{v:.0f}" for v in m["unrolled"])
        lines.append(f"| memory O(1) vs O(K) (saved-for-backward MiB at K = {ks}; unrolled "
                     "through K fresh inner batches, not `abrl train --hypergrad unrolled`, "
                     "which reuses the step's features) | implicit "
                     f"{imp} (growth {m['growth_implicit']:+.1%}); unrolled {unr} (growth "
                     f"{m['growth_unrolled']:+.1%}) | **{m['verdict']}** |")  # fmt: skip
    lines += ["", "Rules:", ""]
    for key in ("accuracy_gain", "latency", "penalty_overhead", "memory"):
        if key in c:
            lines.append(f"- **{key}** — paper: “{c[key]['claim']}”. Rule: {c[key]['rule']}.")
    if "latency" in c:
        for s in c["latency"]["skipped"]:
            lines.append(f"- latency: skipped {s['backend']}: {s['reason']}")
    return lines + [""]
