"""The optimize report: JSON (the data), Markdown (a table to read) and a plot of select
accuracy against latency with the frontier and the choice marked."""

from __future__ import annotations

from typing import Any

from abrl_deploy.atomic import atomic_open, atomic_write_text
from abrl_deploy.bench.report import write_json
from abrl_deploy.errors import DependencyError

from .candidates import REFERENCE
from .spec import OptimizeSpec


def write_reports(report: dict[str, Any], spec: OptimizeSpec) -> None:
    write_json(report, spec.report_path("json"))
    atomic_write_text(spec.report_path("markdown"), markdown(report))
    write_plot(report, spec)


def eligibility(row: dict[str, Any]) -> str:
    """The "eligible" cell of a row, in the terminal and in Markdown alike."""
    if row["label"] == REFERENCE:
        return "reference"
    if not row["shippable"]:
        return "not shipped"
    return "yes" if row["eligible"] else "no"


def markdown(report: dict[str, Any]) -> str:
    rule, env = report["rule"], report["environment"]
    lines = [
        f"# abrl optimize: {report['run_dir']}",
        "",
        f"CPU: {env['cpu']} ({', '.join(env['cpu_flags']) or 'no AVX2'}), "
        f"{env['cpus_usable']} usable cores; batch {report['protocol']['batch']}, threads "
        f"{report['protocol']['threads'] or 'runtime default'}; {report['created']}.",
        "",
        f"Rule: {rule['text']}. Reference {rule['reference']}: "
        f"{rule['reference_select_top1']:.2f}% on {rule['select_images']} select images, the "
        f"{rule['chosen_on']} (one image = {rule['points_per_select_image']:.2f} points); max "
        f"drop {rule['max_drop']} points; reported on the other {rule['holdout_images']}.",
        f"{rule['bf16']}.",
        "",
        "| variant | runs in | p50 ms | speed-up vs eager [95% CI] | select top-1 | holdout top-1 "
        "| eligible | frontier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(report["candidates"], key=lambda r: r["latency"]["p50_ms"]):
        s = r["speedup"]
        name = f"**{r['label']}** (chosen)" if r["chosen"] else r["label"]
        eligible = eligibility(r)
        lines.append(
            f"| {name} | {r['runtime_precision']} | {r['latency']['p50_ms']:.2f} | "
            f"{s['p50']:.2f}× [{s['low']:.2f}, {s['high']:.2f}] | {r['select']['top1']:.2f} | "
            f"{r['holdout']['top1']:.2f} | {eligible} | {'yes' if r['frontier'] else ''} |"
        )
    lines += ["", f"Shipped: `{report['deploy']}` ({report['chosen']})."]
    for note in report["notes"]:
        lines.append(f"- {note}")
    for s in report["skipped"]:
        lines.append(f"- skipped {s['candidate']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def write_plot(report: dict[str, Any], spec: OptimizeSpec) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError(
            "the optimize plot needs matplotlib; pip install 'abrl[bench]'"
        ) from None
    rows = sorted(report["candidates"], key=lambda r: r["latency"]["p50_ms"])
    fig, ax = plt.subplots(figsize=(13, 5.5))
    # numbered points, named in the legend: variants often tie on accuracy, and labels beside
    # the points would overwrite each other
    for i, r in enumerate(rows, 1):
        x, y = r["latency"]["p50_ms"], r["select"]["top1"]
        style = {"marker": "*", "s": 260, "color": "tab:red"} if r["chosen"] else {
            "marker": "o" if r["shippable"] else "s", "s": 50,
            "color": "tab:blue" if r["shippable"] else "tab:gray"}  # fmt: skip
        name = f"{i}. {r['label']} ({r['runtime_precision']}), {x:.1f} ms"
        ax.scatter(x, y, zorder=3, label=name + (" — chosen" if r["chosen"] else ""), **style)
        ax.annotate(str(i), (x, y), fontsize=8, xytext=(0, 7 + 9 * (i % 3)),
                    textcoords="offset points", ha="center")  # fmt: skip
    front = [r for r in rows if r["frontier"]]
    ax.step([r["latency"]["p50_ms"] for r in front], [r["select"]["top1"] for r in front],
            where="post", color="tab:green", zorder=2)  # fmt: skip
    ax.scatter([r["latency"]["p50_ms"] for r in front], [r["select"]["top1"] for r in front],
               s=160, facecolors="none", edgecolors="tab:green", zorder=4,
               label="on the frontier (nothing faster and more accurate)")  # fmt: skip
    floor = report["rule"]["reference_select_top1"] - report["rule"]["max_drop"]
    ax.axhline(
        floor,
        color="tab:orange",
        linestyle="--",
        label=f"reference − {report['rule']['max_drop']} points",
    )
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per batch of {report['protocol']['batch']}, ms (log)")
    ax.set_ylabel(f"select top-1, % ({report['rule']['select_images']} test images)")
    ax.set_title(f"{report['environment']['cpu']}: accuracy against latency")
    ax.margins(x=0.2, y=0.1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    try:
        with atomic_open(spec.report_path("plot"), "wb") as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
