"""``abrl export``: a run directory to a verified ONNX file or a TensorRT engine."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from abrl_deploy.errors import ConfigError

from .app import app, handle_errors


class Format(str, Enum):
    onnx = "onnx"
    trt = "trt"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def parse_ints(text: str, n: int, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise ConfigError(f"{what} {text!r}: expected {n} comma-separated integers")
    return values


@app.command()
@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by abrl train.")],
    format: Annotated[
        Format, typer.Option("--format", help="onnx or trt (TensorRT engine).")
    ] = Format.onnx,
    precision: Annotated[
        Precision, typer.Option("--precision", help="fp32, fp16 or int8 (static QDQ).")
    ] = Precision.fp32,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file [default: in RUN_DIR].")
    ] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    batch_range: Annotated[
        str, typer.Option("--batch-range", help="TensorRT profile MIN,OPT,MAX.")
    ] = "1,64,256",
    outputs: Annotated[
        str, typer.Option("--outputs", help="logits or logits,features.")
    ] = "logits",
    calibration_images: Annotated[
        int, typer.Option("--calibration-images", help="INT8 calibration images.")
    ] = 256,
    validation_images: Annotated[
        int, typer.Option("--validation-images", help="Test images to verify on.")
    ] = 256,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="The run's dataset, if it moved.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing artifact.")] = False,
) -> None:
    """Export encoder + head as one verified graph; fail loudly on any parity check."""
    from abrl_deploy.export import ExportSpec
    from abrl_deploy.export import export as run_export

    spec = ExportSpec(
        run_dir=run_dir, format=format.value, precision=precision.value, out=out, opset=opset,
        batch_range=parse_ints(batch_range, 3, "--batch-range"),
        outputs=tuple(o.strip() for o in outputs.split(",")),
        calibration_images=calibration_images, validation_images=validation_images,
        data_dir=str(data_dir) if data_dir else None, force=force,
    )  # fmt: skip
    result = run_export(spec)
    m, console = result.validation, Console()
    what = f"{result.format} {result.precision}, exporter: {result.exporter}"
    console.print(
        f"wrote {result.path} ({what}, {result.seconds:.1f} s)", highlight=False, soft_wrap=True
    )
    runtime = "TensorRT" if result.format == "trt" else "ONNX Runtime"
    console.print(
        f"verified on {m['images']} test images: max |Δlogit| {m['max_abs_diff']:.2e}, "
        f"min cosine {m['min_cosine']:.6f}, top-1 agreement {100 * m['top1_agreement']:.2f}%, "
        f"top-1 {m['top1_reference']:.2f}% (PyTorch) vs {m['top1_onnx']:.2f}% ({runtime})",
        highlight=False,
        soft_wrap=True,
    )
