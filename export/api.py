"""``export_file()``: a run directory to one verified ONNX file (fp32, fp16, int8) or TensorRT
engine. ``export()`` (``dispatch.py``) sends Triton repositories to ``triton.py``, which calls
this for the file it holds."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abrl_deploy.artifacts import ENGINE, TIMING_CACHE, refuse_overwrite, sidecar
from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, ExportError

from .images import run_images
from .onnx import embed_card, run_ladder
from .spec import ExportResult, ExportSpec
from .validate import ValidationReport, validate_onnx, validate_runner


def export_file(spec: ExportSpec) -> ExportResult:
    """Export, verify, and only then write the ONNX file or engine under its final name."""
    if spec.format == "triton":
        raise ConfigError("export_file writes one file; abrl_deploy.export.export() does triton")
    from abrl_deploy.training.checkpoint import load_classifier

    t0 = time.perf_counter()
    if spec.format == "trt":
        from .tensorrt import require_tensorrt

        require_tensorrt()  # before any work: exit 2 with the install hint
    target = spec.onnx_path if spec.format == "onnx" else spec.engine_path
    refuse_overwrite([target] + ([sidecar(target)] if spec.format == "trt" else []), spec.force)
    model, card = load_classifier(spec.run_dir)
    images, labels = run_images(card, "test", spec.validation_images, spec.data_dir)
    reference = _torch_outputs(model, images, spec.outputs)

    def check(path: Path, precision: str) -> ValidationReport:
        return validate_onnx(path, reference, images, labels, precision)

    def check_runner(runner, precision: str) -> ValidationReport:
        return validate_runner(runner, reference, images, labels, precision)

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".abrl-export-") as tmp:
        tmp_dir = Path(tmp)
        path, exporter, report = run_ladder(
            model, tmp_dir, lambda p: check(p, "fp32"),
            size=card.input_size, opset=spec.opset, outputs=spec.outputs,
        )  # fmt: skip
        fp32_metrics, int8 = report.metrics, None
        if spec.precision != "fp32":
            path, report, int8 = _variant(spec, card, path, tmp_dir, check)
        info = _export_info(spec, exporter, report, fp32_metrics)
        if int8 is not None:
            info["int8"].update(int8)
        if spec.format == "onnx":
            embed_card(path, card.replace(export=info), dst=target)
            extra = {"int8": info["int8"]} if "int8" in info else {}
            return ExportResult(target, "onnx", spec.precision, exporter, report.metrics,
                                time.perf_counter() - t0, extra)  # fmt: skip
        return _engine(spec, card, info, path, exporter, report, t0, tmp_dir, check_runner)


def _variant(spec: ExportSpec, card: ModelCard, fp32: Path, tmp_dir: Path, check):
    """FP16 or INT8 from the validated FP32 file; validated against PyTorch in its turn.
    Returns (path, report, what the card records of INT8's fallback or None)."""
    from .int8_fallback import quantize_within_tolerance
    from .quantize import convert_fp16

    out = tmp_dir / f"model.{spec.precision}.onnx"
    if spec.precision == "int8":
        calib, _ = run_images(card, "train", spec.calibration_images, spec.data_dir)
        batches = [calib[i : i + 32] for i in range(0, len(calib), 32)]
        return (out, *quantize_within_tolerance(fp32, out, batches, lambda p: check(p, "int8"),
                                                form=spec.int8_form,
                                                calibration=spec.calibration))  # fmt: skip
    convert_fp16(fp32, out)
    report = check(out, spec.precision)
    if not report.passed:
        raise ExportError(f"{spec.precision} variant failed: " + "; ".join(report.failures()))
    return out, report, None


def _engine(spec, card, info, onnx_path, exporter, report, t0, tmp_dir, check) -> ExportResult:
    """Build in the temporary folder, run the engine itself through the same checks against
    PyTorch, and only then move engine and sidecar into place."""
    from abrl_deploy.runtime.tensorrt import TrtRunner

    from .tensorrt import build_engine

    engine_path, built = spec.engine_path, tmp_dir / ENGINE
    cache = engine_path.parent / TIMING_CACHE
    res = build_engine(
        onnx_path, built, input_name="images",
        image_shape=(3, card.input_size, card.input_size), batch_range=spec.batch_range,
        precision=spec.precision, timing_cache=cache,
    )  # fmt: skip
    info = info | {
        "format": "trt", "tensorrt": res.tensorrt_version,
        "strongly_typed": res.strongly_typed, "build_seconds": res.build_seconds,
    }  # fmt: skip
    with TrtRunner(built) as runner:
        engine_report = check(runner, spec.precision)
    if not engine_report.passed:
        raise ExportError("TensorRT engine failed: " + "; ".join(engine_report.failures()))
    info["engine_validation"] = engine_report.metrics
    atomic_write_text(sidecar(engine_path), card.replace(export=info).to_json() + "\n")
    os.replace(built, engine_path)
    return ExportResult(engine_path, "trt", spec.precision, exporter, engine_report.metrics,
                        time.perf_counter() - t0, {"timing_cache": str(cache)})  # fmt: skip


@torch.no_grad()
def _torch_outputs(model, images: np.ndarray, outputs) -> dict[str, np.ndarray]:
    x = torch.from_numpy(images)
    z = torch.cat([model.forward_features(x[i : i + 64]) for i in range(0, len(x), 64)])
    ref = {"logits": model.forward_head(z).double().numpy()}
    if "features" in outputs:
        ref["features"] = z.double().numpy()
    return ref


def _export_info(spec: ExportSpec, exporter: str, report, fp32_metrics) -> dict[str, Any]:
    import onnx
    import onnxruntime

    info: dict[str, Any] = {
        "format": "onnx", "precision": spec.precision, "exporter": exporter, "opset": spec.opset,
        "outputs": list(spec.outputs), "input": "images [N,3,H,W] float32",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "validation": report.metrics, "batch_range": list(spec.batch_range),
    }  # fmt: skip
    if spec.precision != "fp32":
        info["top1_change_vs_fp32"] = report.metrics["top1_onnx"] - fp32_metrics["top1_onnx"]
    if spec.precision == "int8":
        from .quantize import INT8_FORMS

        info["int8"] = {"form": spec.int8_form, **INT8_FORMS[spec.int8_form],
                        "calibration": spec.calibration,
                        "calibration_images": spec.calibration_images}  # fmt: skip
    return json.loads(json.dumps(info))  # plain JSON types only
