"""``abrl optimize``: the fastest deployment variant of a run, on this machine, within an
accuracy budget; the choice is recorded in the shipped file's card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abrl_deploy.bench.spec import Protocol
from abrl_deploy.optimize.spec import OptimizeSpec

from .app import handle_errors
from .options import RunDataDir, defaults
from .parsing import parse_names
from .progress import run_with_progress

_SPEC, _PROTOCOL = defaults(OptimizeSpec), defaults(Protocol)


@handle_errors
def optimize(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by abrl train.")],
    max_drop: Annotated[
        float,
        typer.Option(
            "--max-drop",
            help="Top-1 points a variant may lose against PyTorch fp32, on the select images "
            "(half of the test split, which no method trains on; the other half is reported).",
        ),
    ] = _SPEC.max_drop,  # fmt: skip
    batch: Annotated[int, typer.Option("--batch", help="Images per timed call.")] = _SPEC.batch,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: the runtime's).")
    ] = None,
    precisions: Annotated[
        str, typer.Option("--precisions", help="ONNX files to build: fp32,fp16,int8.")
    ] = ",".join(_SPEC.precisions),
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Runtimes to try (PyTorch eager fp32 always runs: it is the reference).",
        ),
    ] = ",".join(_SPEC.backends),  # fmt: skip
    bf16: Annotated[
        str,
        typer.Option(
            "--bf16", help="bf16 variants: auto (where the CPU has bf16 instructions), on or off."
        ),
    ] = _SPEC.bf16,  # fmt: skip
    select_images: Annotated[
        int | None,
        typer.Option(
            "--select-images", help="Images of the test split's select half (default: all)."
        ),
    ] = None,
    holdout_images: Annotated[
        int | None,
        typer.Option("--holdout-images", help="Images of its holdout half (default: all)."),
    ] = None,
    min_seconds: Annotated[
        float, typer.Option("--min-seconds", help="Measured seconds per variant, at least.")
    ] = _PROTOCOL.min_seconds,
    data_dir: RunDataDir = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Overwrite model.deploy.onnx and the optimize reports (never a variant file "
            "abrl export wrote).",
        ),
    ] = False,  # fmt: skip
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Build, time and score every CPU variant; ship the fastest within --max-drop."""
    from abrl_deploy.optimize import run_optimize

    spec = OptimizeSpec(
        run_dir=run_dir, max_drop=max_drop, batch=batch, threads=threads,
        precisions=parse_names(precisions), backends=parse_names(backends), bf16=bf16,
        select_images=select_images, holdout_images=holdout_images,
        protocol=Protocol(min_seconds=min_seconds), data_dir=str(data_dir) if data_dir else None,
        force=force,
    )  # fmt: skip
    report = run_with_progress(run_optimize, spec, quiet)
    _print(report, spec)


def _print(report: dict, spec) -> None:
    from abrl_deploy.optimize.report import eligibility

    console = Console() if Console().is_terminal else Console(width=140)
    env, rule = report["environment"], report["rule"]
    for note in report["notes"]:
        console.print(escape(note), highlight=False, soft_wrap=True)
    table = Table(title=f"abrl optimize · batch {spec.batch} · {escape(env['cpu'])} "
                  f"({escape(' '.join(env['cpu_flags']))})")  # fmt: skip
    table.add_column("variant", overflow="fold")
    table.add_column("runs in", overflow="fold")
    for col in ("p50 ms", "speed-up [95% CI]", "select top-1", "holdout top-1", "ok"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in sorted(report["candidates"], key=lambda r: r["latency"]["p50_ms"]):
        s = r["speedup"]
        ok = eligibility(r)
        name = f"[bold]{escape(r['label'])} ← chosen[/]" if r["chosen"] else escape(r["label"])
        table.add_row(name, escape(r["runtime_precision"]), f"{r['latency']['p50_ms']:.2f}",
                      f"{s['p50']:.2f}× [{s['low']:.2f}, {s['high']:.2f}]",
                      f"{r['select']['top1']:.2f}", f"{r['holdout']['top1']:.2f}", ok)  # fmt: skip
    console.print(table)
    console.print(
        escape(f"rule: fastest ONNX variant within {rule['max_drop']} points of PyTorch fp32's "
               f"{rule['reference_select_top1']:.2f}% on {rule['select_images']} images, the "
               f"{rule['chosen_on']} (one image = {rule['points_per_select_image']:.2f} "
               f"points); {rule['bf16']}"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    for s in report["skipped"]:
        console.print(escape(f"skipped {s['candidate']}: {s['reason']}"), highlight=False,
                      soft_wrap=True)  # fmt: skip
    for w in report.get("warnings", ()):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    chosen = next(r for r in report["candidates"] if r["chosen"])
    console.print(
        escape(f"chosen: {chosen['label']} ({chosen['runtime_precision']}): holdout top-1 "
               f"{chosen['holdout']['top1']:.2f}%, {chosen['speedup']['p50']:.2f}× PyTorch eager "
               f"fp32 measured in this run"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    console.print(
        escape(f"wrote {report['deploy']} (its card records the choice; the Predictor, abrl "
               f"predict and abrl serve use it on this CPU) and "
               f"{', '.join(str(spec.report_path(k)) for k in ('json', 'markdown', 'plot'))}"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
