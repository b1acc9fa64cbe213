"""The bench report on disk: JSON (versioned schema in ``bench.schema.json``) and Markdown."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from abrl_deploy.atomic import atomic_write_text


def schema() -> dict[str, Any]:
    """The JSON Schema every ``bench.json`` validates against."""
    return json.loads(resources.files(__package__).joinpath("bench.schema.json").read_text())


def write_json(report: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=1, sort_keys=True) + "\n")


def write_markdown(report: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, markdown(report))


def markdown(report: dict[str, Any]) -> str:
    env, proto = report["environment"], report["protocol"]
    lines = [
        "# abrl bench",
        "",
        f"{report['created']} · abrl {report['abrl_version']} · {env['cpu']} "
        f"({env['cpus_usable']} usable CPUs) · GPU: {env['gpu'] or 'none'}",
        "",
        f"Batch {proto['batch']}; {proto['warmup']} warm-up calls, then at least "
        f"{proto['min_iters']} calls and {proto['min_seconds']} s per model, in interleaved "
        f"blocks of {proto['block']}. Timer: {proto['timer']}. Percentiles: "
        f"{proto['percentile_estimator']}.",
        "",
        "## Latency and accuracy",
        "",
        "| model | backend | p50 ms | p90 ms | p95 ms | p99 ms | mean ms | std ms | CV | img/s "
        "| n | load s | first ms | top-1 % | top-5 % | flips vs ref | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lat, acc, agr = r["latency"], r["accuracy"], r["agreement"]
        top5 = "–" if acc["top5"] is None else f"{acc['top5']:.2f}"
        lines.append(
            f"| {r['model']} | {r['backend']} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} "
            f"| {lat['p95_ms']:.2f} | {lat['p99_ms']:.2f} | {lat['mean_ms']:.2f} "
            f"| {lat['std_ms']:.2f} | {lat['cv']:.1%} | {lat['throughput_ips']:.0f} "
            f"| {lat['count']} | {r['load_seconds']:.2f} | {r['first_call_ms']:.1f} "
            f"| {acc['top1']:.2f} | {top5} | {agr['top1_flip_rate']:.2%} ({agr['reference']}) "
            f"| {agr['max_abs_diff']:.1e} |"
        )
    if report["comparisons"]:
        claim = report["claim"]
        lines += [
            "",
            f"## Claim: {claim['reduction']:.0%} lower latency than {claim['baseline']}",
            "",
            f"{claim['confidence']:.0%} bootstrap confidence interval (CI) over the interleaved "
            f"blocks. Rule: {claim['rule']}.",
            "",
            "| model | backend | statistic | ratio | CI | reduction | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in report["comparisons"]:
            lines.append(
                f"| {c['model']} | {c['backend']} | {c['statistic']} | {c['ratio']:.3f} "
                f"| [{c['low']:.3f}, {c['high']:.3f}] | {c['reduction']:+.1%} "
                f"| **{c['verdict']}** |"
            )
    skipped = report["backends"]["skipped"]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['backend']}" + (f" ({s['model']})" if s["model"] else "")
                  + f": {s['reason']}" for s in skipped]  # fmt: skip
    assumed = [(m["label"], m["assumed"]) for m in report["models"] if m["assumed"]]
    if assumed:
        lines += ["", "## Assumed facts (no model card)", ""]
        for label, facts in assumed:
            lines.append(f"- {label}: " + ", ".join(f"{k} from {v}" for k, v in facts.items()))
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"
