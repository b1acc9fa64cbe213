"""``abrl export``: a run directory to a verified ONNX file, a TensorRT engine or a Triton model
repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from abrl_deploy.export import spec as choices_of

from .app import handle_errors
from .options import RunDataDir
from .parsing import choices, parse_numbers

Format = choices("Format", choices_of.FORMATS)
TritonPlatform = choices("TritonPlatform", choices_of.TRITON_PLATFORMS)
Precision = choices("Precision", choices_of.FILE_PRECISIONS)
Calibration = choices("Calibration", choices_of.CALIBRATIONS)


@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by abrl train.")],
    format: Annotated[
        Format,
        typer.Option("--format", help="onnx, trt (TensorRT engine) or triton (model repository)."),
    ] = Format.onnx,
    precision: Annotated[
        Precision, typer.Option("--precision", help="fp32, fp16 or int8 (static QDQ).")
    ] = Precision.fp32,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output file; for triton the model repository \\[default: in RUN_DIR, "
            "for triton RUN_DIR/triton].",
        ),
    ] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    batch_range: Annotated[
        str,
        typer.Option(
            "--batch-range",
            help="MIN,OPT,MAX: the TensorRT profile; for triton also max_batch_size=MAX and "
            "preferred_batch_size=OPT.",
        ),
    ] = "1,64,256",
    outputs: Annotated[
        str, typer.Option("--outputs", help="logits or logits,features.")
    ] = "logits",
    calibration_images: Annotated[
        int, typer.Option("--calibration-images", help="INT8 calibration images (train split).")
    ] = 512,
    calibration: Annotated[
        Calibration,
        typer.Option(
            "--calibration", help="INT8 activation ranges: minmax, percentile or entropy."
        ),
    ] = Calibration.minmax,  # fmt: skip
    validation_images: Annotated[
        int, typer.Option("--validation-images", help="Test images to verify on.")
    ] = 256,
    data_dir: RunDataDir = None,
    model_name: Annotated[
        str | None,
        typer.Option("--model-name", help="Triton model name \\[default: RUN_DIR's name]."),
    ] = None,
    triton_platform: Annotated[
        TritonPlatform,
        typer.Option("--triton-platform", help="Triton: onnxruntime_onnx or tensorrt_plan."),
    ] = TritonPlatform.onnxruntime_onnx,
    max_queue_delay_us: Annotated[
        int, typer.Option("--max-queue-delay-us", help="Triton dynamic batching queue delay.")
    ] = 100,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing artifact.")] = False,
) -> None:
    """Export encoder + head as one verified graph; fail loudly on any parity check."""
    from abrl_deploy.export import ExportSpec
    from abrl_deploy.export import export as run_export

    spec = ExportSpec(
        run_dir=run_dir, format=format.value, precision=precision.value, out=out, opset=opset,
        batch_range=parse_numbers(batch_range, "--batch-range", n=3, example="1,64,256"),
        outputs=tuple(o.strip() for o in outputs.split(",")),
        calibration_images=calibration_images, calibration=calibration.value,
        validation_images=validation_images,
        data_dir=str(data_dir) if data_dir else None, force=force, model_name=model_name,
        triton_platform=triton_platform.value, max_queue_delay_us=max_queue_delay_us,
    )  # fmt: skip
    result = run_export(spec)
    m, console = result.validation, Console()
    platform = result.extra.get("platform")
    kind = f"triton {platform}" if platform else result.format
    what = f"{kind} {result.precision}, exporter: {result.exporter}"
    console.print(
        f"wrote {result.path} ({what}, {result.seconds:.1f} s)", highlight=False, soft_wrap=True
    )
    trt = result.format == "trt" or platform == "tensorrt_plan"
    runtime = "TensorRT" if trt else "ONNX Runtime"
    console.print(
        f"verified on {m['images']} test images: max |Δlogit| {m['max_abs_diff']:.2e}, "
        f"min cosine {m['min_cosine']:.6f}, top-1 agreement {100 * m['top1_agreement']:.2f}%, "
        f"top-1 {m['top1_reference']:.2f}% (PyTorch) vs {m['top1_onnx']:.2f}% ({runtime})",
        highlight=False,
        soft_wrap=True,
    )
    int8 = result.extra.get("int8")
    if int8:
        kept = int8.get("kept_in_float") or []
        console.print(
            f"int8 form: activations {int8['activations']}, weights {int8['weights']} (for "
            f"{int8['for']}); calibration {int8['calibration']} on {int8['calibration_images']} "
            f"train images; kept in float: {', '.join(kept) if kept else 'none'}",
            highlight=False,
            soft_wrap=True,
        )
    if platform:
        serve = f"serve: tritonserver --model-repository {result.path.parent}"
        console.print(serve, highlight=False, soft_wrap=True)
    for w in result.extra.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
