"""``abrl bench``: latency and accuracy across backends; a verdict on the claimed reduction."""

from __future__ import annotations

import importlib.util
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abrl_deploy.bench.spec import BenchSpec, Protocol
from abrl_deploy.errors import DependencyError
from abrl_deploy.runtime.backends import BACKENDS

from .app import handle_errors
from .options import defaults
from .parsing import parse_names, parse_numbers
from .progress import run_with_progress
from .render import verdict_markup

_SPEC, _PROTOCOL = defaults(BenchSpec), defaults(Protocol)


class Layout(str, Enum):
    nchw = "nchw"
    nhwc = "nhwc"


def _rgb(text: str | None, flag: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    return parse_numbers(text, flag, kind=float, n=3, example="0.485,0.456,0.406")


@handle_errors
def bench(
    models: Annotated[
        list[Path], typer.Argument(help="Run directories, .onnx files or .engine files.")
    ],
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Compare every MODEL with this one.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=f"Comma-separated: {','.join(BACKENDS)} \\[default: every one that can run here].",
        ),
    ] = None,  # fmt: skip
    batch: Annotated[int, typer.Option("--batch", help="Batch size timed.")] = _SPEC.batch,
    warmup: Annotated[
        int, typer.Option("--warmup", help="Untimed calls per model.")
    ] = _PROTOCOL.warmup,
    min_iters: Annotated[
        int, typer.Option("--min-iters", help="Timed calls per model.")
    ] = _PROTOCOL.min_iters,
    min_seconds: Annotated[
        float, typer.Option("--min-seconds", help="Timed seconds per model.")
    ] = _PROTOCOL.min_seconds,
    block: Annotated[
        int, typer.Option("--block", help="Calls per interleaved block.")
    ] = _PROTOCOL.block,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for torch and ONNX Runtime.")
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the PyTorch backends.")
    ] = _SPEC.compile,
    ov_precision: Annotated[
        str,
        typer.Option(
            "--ov-precision",
            help="OpenVINO inference precision: auto (its own: "
            "bf16 on AMX/AVX-512 BF16 CPUs), f32, bf16 or f16.",
        ),
    ] = _SPEC.ov_precision,  # fmt: skip
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Test images for a model without a card.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the dataset is, if not embedded.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Test images for accuracy \\[default: all].")
    ] = None,
    input_size: Annotated[
        int | None, typer.Option("--input-size", help="No card: square input size.")
    ] = None,
    mean: Annotated[str | None, typer.Option("--mean", help="No card: R,G,B mean.")] = None,
    std: Annotated[str | None, typer.Option("--std", help="No card: R,G,B std.")] = None,
    layout: Annotated[
        Layout | None, typer.Option("--layout", help="No card: nchw or nhwc.")
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(
            "--resize",
            help="No card: shorter side before the centre crop; 0: none "
            "\\[default: the input size, so images already that size are untouched].",
        ),
    ] = None,  # fmt: skip
    interpolation: Annotated[
        str | None,
        typer.Option(
            "--interpolation",
            help="No card: bilinear, bicubic, nearest, "
            "lanczos, box or hamming \\[default: bilinear].",
        ),
    ] = None,  # fmt: skip
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale",
            help="No card: pixels times 1/255 (in [0, 1]) or 1 "
            "(0-255) before --mean/--std \\[default: 1/255].",
        ),
    ] = None,  # fmt: skip
    channel_order: Annotated[
        str | None,
        typer.Option(
            "--channel-order",
            help="No card: rgb or bgr (--mean/--std in that order) \\[default: rgb].",
        ),
    ] = None,  # fmt: skip
    save_card: Annotated[
        Path | None,
        typer.Option(
            "--save-card",
            help="No card: write the card built from the "
            "flags here, for abrl predict --card and Predictor(card=).",
        ),
    ] = None,  # fmt: skip
    claim: Annotated[
        float, typer.Option("--claim", help="Claimed latency reduction vs --baseline.")
    ] = _SPEC.claim,
    report: Annotated[Path | None, typer.Option("--report", help="Write JSON here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG figure here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite report files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Time and score models on every backend with one protocol; test the claimed reduction."""
    from abrl_deploy.artifacts import refuse_overwrite
    from abrl_deploy.bench import BenchSpec, ModelFacts, Protocol, run_bench
    from abrl_deploy.bench.report import write_json, write_markdown

    refuse_overwrite([report, markdown, plot, save_card], force)
    # before minutes of timing, not after them
    _require("scipy", "--baseline", baseline is not None)
    _require("matplotlib", "--plot", plot is not None)
    spec = BenchSpec(
        models=tuple(models), baseline=baseline,
        backends=parse_names(backend) if backend else None,
        batch=batch, protocol=Protocol(warmup, min_iters, min_seconds, block), threads=threads,
        compile=compile, ov_precision=ov_precision,
        data_dir=str(data_dir) if data_dir else None, limit=limit, claim=claim,
        facts=ModelFacts(input_size=input_size, mean=_rgb(mean, "--mean"),
                         std=_rgb(std, "--std"),
                         layout=layout.value.upper() if layout else None, dataset=dataset,
                         resize=resize, interpolation=interpolation, scale=scale,
                         channel_order=channel_order.upper() if channel_order else None),
    )  # fmt: skip
    if save_card is not None:
        _save_card(spec, save_card)
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no number is cut
        console = Console(width=140)
    result = run_with_progress(run_bench, spec, quiet)
    _print(console, result)
    for path, write in ((report, write_json), (markdown, write_markdown)):
        if path is not None:
            write(result, path)
            console.print(f"wrote {path}", highlight=False)
    if plot is not None:
        from abrl_deploy.bench.plot import write_plot

        write_plot(result, plot)
        console.print(f"wrote {plot}", highlight=False)


def _save_card(spec, path: Path) -> None:
    """Write the card the flags describe (checked before any timing)."""
    from abrl_deploy.bench.models import resolve_model
    from abrl_deploy.errors import ConfigError

    cardless = [s for s in map(lambda m: resolve_model(m, spec.facts), spec.models) if s.assumed]
    if len(cardless) != 1:
        raise ConfigError(
            f"--save-card writes the card of one model without a card; {len(cardless)} given"
        )
    cardless[0].card.save(path)
    Console(stderr=True).print(f"wrote {path}", highlight=False)


def _require(module: str, flag: str, needed: bool) -> None:
    if needed and importlib.util.find_spec(module) is None:
        raise DependencyError(f"{flag} needs {module}; pip install 'abrl[bench]'")


def _backend_label(row: dict) -> str:
    """The backend, with the precision it really ran in where that is not the file's own."""
    runner = row["runner"]
    precision = runner.get("inference_precision") or runner.get("precision")
    return row["backend"] + (f" ({precision})" if precision and precision != "fp32" else "")


def _print(console: Console, r: dict) -> None:
    env = r["environment"]
    table = Table(
        title=f"abrl bench · batch {r['protocol']['batch']} · {escape(env['cpu'])}",
        caption="flips: top-1 changes against the reference backend in brackets",
    )
    table.add_column("model", overflow="fold")  # long paths wrap; numbers never do
    table.add_column("backend", no_wrap=True)
    for col in ("p50 ms", "p90 ms", "CV", "n", "img/s", "first ms", "top-1 %", "flips"):
        table.add_column(col, justify="right", no_wrap=True)
    for x in r["results"]:
        lat, agr = x["latency"], x["agreement"]
        table.add_row(
            escape(x["model"]), _backend_label(x), f"{lat['p50_ms']:.2f}", f"{lat['p90_ms']:.2f}",
            f"{lat['cv']:.1%}", str(lat["count"]), f"{lat['throughput_ips']:.0f}",
            f"{x['first_call_ms']:.0f}", f"{x['accuracy']['top1']:.2f}",
            f"{agr['top1_flip_rate']:.2%} ({agr['reference']})",
        )  # fmt: skip
    console.print(table)
    for s in r["backends"]["skipped"]:
        which = f" ({s['model']})" if s["model"] else ""
        console.print(escape(f"skipped {s['backend']}{which}: {s['reason']}"), highlight=False)
    if r["comparisons"]:
        c0 = r["claim"]
        verdicts = Table(title=f"claim: {c0['reduction']:.0%} lower latency than "
                         f"{escape(c0['baseline'])} ({c0['confidence']:.0%} bootstrap CI "
                         "of the latency ratio)")  # fmt: skip
        verdicts.add_column("model", overflow="fold")
        for col in ("backend", "stat", "ratio", "CI", "reduction", "verdict"):
            verdicts.add_column(col, no_wrap=True, min_width=12 if col == "verdict" else None)
        for c in r["comparisons"]:
            verdicts.add_row(
                escape(c["model"]), c["backend"], c["statistic"], f"{c['ratio']:.3f}",
                f"[{c['low']:.3f}, {c['high']:.3f}]", f"{c['reduction']:+.1%}",
                verdict_markup(c["verdict"]),
            )  # fmt: skip
        console.print(verdicts)
    for w in r["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
