"""``abrl reproduce``: the paper's grid and claims; parse flags, call ``reproduce``, print."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abrl_deploy.reproduce.plan import ReproduceSpec

from .app import handle_errors
from .options import defaults
from .parsing import parse_numbers
from .render import verdict_markup

_SPEC = defaults(ReproduceSpec)


class Preset(str, Enum):
    paper = "paper"
    cpu_small = "cpu-small"
    transfer_cpu = "transfer-cpu"


class Executor(str, Enum):
    local = "local"
    ray = "ray"


def _opt(help: str, *names: str) -> Any:
    return typer.Option(*names, help=help)


@handle_errors
def reproduce(
    preset: Annotated[
        Preset,
        _opt(
            "paper: configs/paper-<dataset>.yaml (a GPU); cpu-small: minutes on a CPU; "
            "transfer-cpu: the paper's regime at CPU scale (configs/transfer-cpu.yaml).",
            "--preset",
        ),
    ] = Preset(_SPEC.preset),
    datasets: Annotated[
        str | None,
        _opt(
            "Comma-separated (default: cifar100,tiny-imagenet,cub200 for paper, "
            "digits for cpu-small); the first gets the ablation.",
            "--datasets",
        ),
    ] = None,
    data_dir: Annotated[Path | None, _opt("Folder holding the datasets.", "--data-dir")] = None,
    seeds: Annotated[str, _opt("Comma-separated seeds.", "--seeds")] = ",".join(
        map(str, _SPEC.seeds)
    ),
    out: Annotated[
        Path,
        _opt(
            "Output folder (runs, report). With --executor ray every node writes its runs here "
            "directly: give storage every node mounts at the same path (NFS, a shared PVC).",
            "--out",
            "-o",
        ),
    ] = _SPEC.out,
    resume: Annotated[
        bool, _opt("Reuse finished runs, resume unfinished ones, rewrite the report.", "--resume")
    ] = _SPEC.resume,
    force: Annotated[
        bool, _opt("Retrain every run and remeasure everything.", "--force")
    ] = _SPEC.force,
    report_only: Annotated[
        bool, _opt("Train nothing: report the finished runs, list the missing.", "--report-only")
    ] = _SPEC.report_only,
    epochs: Annotated[int | None, _opt("Override the preset's epochs.", "--epochs")] = None,
    image_size: Annotated[
        int | None, _opt("Override the input size of every run.", "--image-size")
    ] = None,
    limit: Annotated[
        int | None, _opt("Use at most N training images per run (a subset).", "--limit")
    ] = None,
    config_dir: Annotated[
        Path | None,
        _opt("Where the preset YAMLs are (default: the repo's configs/).", "--config-dir"),
    ] = None,
    latency: Annotated[
        bool, _opt("Bench ABRL against fine-tune (claim 2).", "--latency/--no-latency")
    ] = _SPEC.latency,
    costs: Annotated[
        bool, _opt("Time the penalty and count memory (claims 3, 4).", "--costs/--no-costs")
    ] = _SPEC.costs,
    bench_seconds: Annotated[
        float, _opt("Timed seconds per model in the latency bench.", "--bench-seconds")
    ] = _SPEC.bench_seconds,
    executor: Annotated[
        Executor,
        _opt(
            "local: the cells one after another in this process; ray: each cell a Ray task on "
            "the cluster (pip install 'abrl\\[cluster]'; docs/cluster.md).",
            "--executor",
        ),
    ] = Executor(_SPEC.executor),
    ray_address: Annotated[
        str | None,
        _opt(
            "Ray cluster to join: HOST:PORT, ray://HOST:PORT or auto (an existing cluster "
            "only). Default: RAY_ADDRESS or the cluster started on this machine, else a new "
            "local one.",
            "--ray-address",
        ),
    ] = None,
    cpus_per_run: Annotated[
        int,
        _opt(
            "CPUs each Ray task reserves and its torch threads (a CUDA cell also takes 1 GPU).",
            "--cpus-per-run",
        ),
    ] = _SPEC.cpus_per_run,
    max_retries: Annotated[
        int,
        _opt(
            "Ray retries of a cell whose worker or node died; the retry resumes from its "
            "state.pt. A cell's own error is not retried.",
            "--max-retries",
        ),
    ] = _SPEC.max_retries,
    quiet: Annotated[
        bool, _opt("No progress view: a line per cell that trained, resumed or failed.", "--quiet")
    ] = False,
) -> None:
    """Run the paper's Table 1 and 2 grid over seeds and test each claim, with its uncertainty.

    Exit status: 0 when every cell finished; 1 when some cell failed on its own (the report is
    written from the others and names it); 2 for a mistake of the grid (options, a changed saved
    run, an --out the nodes do not share) or when no cell finished.
    """
    from abrl_deploy.reproduce import reproduce as run

    overrides = {"epochs": epochs, "image_size": image_size, "limit": limit}
    spec = ReproduceSpec(
        preset=preset.value,
        datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()) if datasets else None,
        data_dir=str(data_dir) if data_dir else None, out=out,
        seeds=parse_numbers(seeds, "--seeds", example="0,1,2", skip_empty=True),
        resume=resume, force=force, report_only=report_only,
        overrides=tuple((k, v) for k, v in overrides.items() if v is not None),
        config_dir=config_dir, latency=latency, costs=costs, bench_seconds=bench_seconds,
        executor=executor.value, ray_address=ray_address, cpus_per_run=cpus_per_run,
        max_retries=max_retries,
    )  # fmt: skip
    report = _run_with_progress(run, spec, quiet)
    console = Console() if Console().is_terminal else Console(width=140)
    _print(console, report)
    console.print(f"wrote {out / 'reproduce.md'} and {', '.join(report['files'])}", highlight=False)
    if report.get("failed"):  # the report is written from the others; the exit code says it
        for name, why in report["failed"].items():
            console.print(f"[bold red]failed:[/] {name}: {escape(why)}", highlight=False)
        raise typer.Exit(1)


def _run_with_progress(run, spec, quiet: bool) -> dict:
    if quiet:
        from .progress import cell_lines

        return run(spec, cell_lines())
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("planning the grid", total=None)

        def progress(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total)

        return run(spec, progress)


def _print(console: Console, r: dict) -> None:
    table = Table(title=f"abrl reproduce · {r['preset']} · seeds {r['seeds']}")
    table.add_column("claim")
    table.add_column("measured", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    c = r["claims"]
    for row in c["accuracy_gain"]["rows"]:
        ci = "" if row["low"] != row["low"] else f" [{row['low']:+.2f}, {row['high']:+.2f}]"
        table.add_row(f"ABRL − {row['baseline']} on {row['dataset']} (pts, refit heads)",
                      f"{row['mean']:+.2f}{ci}", verdict_markup(row["verdict"]))  # fmt: skip
    for row in c.get("latency", {}).get("rows", []):
        table.add_row(f"latency ratio {row['statistic']}, {row['backend']}",
                      f"{row['ratio']:.3f} [{row['low']:.3f}, {row['high']:.3f}]",
                      verdict_markup(row["verdict"]))  # fmt: skip
    if "penalty_overhead" in c:
        o = c["penalty_overhead"]
        table.add_row("penalty overhead", f"{o['mean']:+.1%} [{o['low']:+.1%}, {o['high']:+.1%}]",
                      verdict_markup(o["verdict"]))  # fmt: skip
    if "memory" in c:
        m = c["memory"]
        table.add_row("memory growth over K", f"implicit {m['growth_implicit']:+.1%}, unrolled "
                      f"{m['growth_unrolled']:+.1%}", verdict_markup(m["verdict"]))  # fmt: skip
    console.print(table)
