"""INT8 that keeps its accuracy: when the fully quantized file misses its tolerance, keep the most
sensitive layers in float, one at a time, until it passes (issue 13).

Sensitivity is measured, not guessed: each Conv/Gemm is quantized alone (every other one kept in
float) and scored by how far its output cosine falls from the FP32 model's on the validation
images; the first convolution and the classifier are the usual culprits, but the measurement
decides. Fails only when nothing passes, naming the best attempt.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.errors import ExportError

from .quantize import ImageCalibrationReader, prepare_int8, quantizable_nodes, quantize_int8
from .validate import ValidationReport

Check = Callable[[Path], ValidationReport]
PROBE_BATCHES = 2  # calibration batches for the per-layer probes (ranges only need to be rough)


def quantize_within_tolerance(
    fp32: Path,
    out: Path,
    batches: Sequence[np.ndarray],
    check: Check,
    *,
    form: str,
    calibration: str,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[ValidationReport, dict[str, Any]]:
    """Write the INT8 file to ``out`` and return its report and what the card records:
    ``kept_in_float`` (node names), ``sensitivity`` (1 - min cosine of each node quantized
    alone, when measured) and every full attempt's numbers."""
    with tempfile.TemporaryDirectory(prefix="abrl-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        prepare_int8(fp32, prepared)  # once: every attempt quantizes the same prepared graph

        def attempt(exclude: Sequence[str], calib: Sequence[np.ndarray] = batches):
            reader = ImageCalibrationReader(list(calib), "images")
            quantize_int8(prepared, out, reader, form=form, calibration=calibration,
                          exclude=tuple(exclude), prepared=True)  # fmt: skip
            return check(out)

        nodes = quantizable_nodes(prepared, prepared=True)
        return _search(attempt, nodes, batches[:PROBE_BATCHES], progress)


def _search(attempt, nodes: list[str], probe, progress) -> tuple[ValidationReport, dict[str, Any]]:
    """Full INT8 first; then per-layer sensitivity and the most sensitive layers kept in float,
    one more at a time, until an attempt passes."""
    report = attempt(())
    attempts = [_row((), report)]
    record: dict[str, Any] = {"kept_in_float": [], "sensitivity": {}, "attempts": attempts}
    if report.passed:
        return report, record
    sensitivity = {}
    for i, node in enumerate(nodes):
        progress(f"int8 missed its tolerance; sensitivity of layer {i + 1}/{len(nodes)}")
        alone = attempt([n for n in nodes if n != node], probe)
        sensitivity[node] = 1.0 - float(alone.metrics["min_cosine"])
    record["sensitivity"] = sensitivity
    kept: list[str] = []
    for node in sorted(nodes, key=sensitivity.__getitem__, reverse=True):
        kept.append(node)
        progress(f"int8 with {len(kept)} layer(s) kept in float")
        report = attempt(kept)
        attempts.append(_row(kept, report))
        if report.passed:
            record["kept_in_float"] = list(kept)
            return report, record
    best = max(attempts, key=lambda a: (a["passed_checks"], a["min_cosine"]))
    raise ExportError(
        f"int8 variant failed even with all {len(nodes)} Conv/Gemm layers in float; best "
        f"attempt ({len(best['kept_in_float'])} in float): " + "; ".join(best["failures"])
    )


def _row(kept: Sequence[str], report: ValidationReport) -> dict[str, Any]:
    return {
        "kept_in_float": list(kept),
        "min_cosine": float(report.metrics["min_cosine"]),
        "top1_agreement": float(report.metrics["top1_agreement"]),
        "passed": bool(report.passed),
        "passed_checks": int(sum(bool(c.passed) for c in report.checks)),
        "failures": report.failures(),
    }
