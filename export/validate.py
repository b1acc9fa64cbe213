"""Parity and accuracy of an exported model against PyTorch on real images, through the runtime's
runners (ONNX Runtime for ONNX files, TensorRT for engines). A failed tolerance is a failure, never
a warning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.compare import agreement, run_batches
from abrl_deploy.runtime import OrtRunner, Runner

# Per precision: max |Δlogit| relative to the largest reference logit, min row cosine, min top-1
# agreement, and the batch-consistency spread relative to the logit scale.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_rel": 1e-3, "cosine": 0.9999, "agreement": 0.99, "consistency_rel": 1e-4},
    "fp16": {"max_abs_rel": 3e-2, "cosine": 0.999, "agreement": 0.98, "consistency_rel": 1e-2},
    "int8": {
        "max_abs_rel": float("inf"),
        "cosine": 0.95,
        "agreement": 0.90,
        "consistency_rel": 2e-2,
    },
}


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        return bool(ok) and np.isfinite(self.value)

    def __str__(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{self.name} = {self.value:.6g} (needs {op} {self.limit:.6g})"


@dataclass(frozen=True)
class ValidationReport:
    checks: tuple[Check, ...]
    metrics: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[str]:
        return [str(c) for c in self.checks if not c.passed]


def validate_onnx(
    path: Path,
    reference: dict[str, np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    precision: str,
) -> ValidationReport:
    """Compare ``path`` in ONNX Runtime CPU with ``reference``, PyTorch's outputs on ``images``."""
    with OrtRunner(path, "ort-cpu") as runner:
        return validate_runner(runner, reference, images, labels, precision)


def validate_runner(
    runner: Runner,
    reference: dict[str, np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    precision: str,
) -> ValidationReport:
    """The same checks on any open runner (ONNX Runtime, or a TensorRT engine after its build)."""
    tol = TOLERANCES[precision]
    got = run_batches(runner.infer, images, 64)
    consistency = _batch_consistency(runner, images)
    ref, out = reference["logits"], got["logits"]
    scale = max(1.0, float(np.abs(ref).max()))
    a = agreement(out, ref)
    agree = 1.0 - a["top1_flip_rate"]
    metrics = {
        "images": len(images),
        "max_abs_diff": a["max_abs_diff"],
        "mean_abs_diff": a["mean_abs_diff"],
        "min_cosine": a["min_cosine"],
        "top1_agreement": agree,
        "top1_reference": float((ref.argmax(1) == labels).mean() * 100),
        "top1_onnx": float((out.argmax(1) == labels).mean() * 100),
        **consistency,
    }
    checks = [
        Check("min_cosine", metrics["min_cosine"], tol["cosine"], True),
        Check("top1_agreement", agree, tol["agreement"], True),
        Check(
            "identical_rows_spread",
            consistency["identical_rows_spread"],
            tol["consistency_rel"] * scale,
            False,
        ),
        Check(
            "batch1_vs_batch64",
            consistency["batch1_vs_batch64"],
            tol["consistency_rel"] * scale,
            False,
        ),
    ]
    if np.isfinite(tol["max_abs_rel"]):  # int8: reported, judged by cosine and agreement instead
        checks.insert(
            0, Check("max_abs_diff", metrics["max_abs_diff"], tol["max_abs_rel"] * scale, False)
        )
    if "features" in reference:
        fdiff = float(np.abs(got["features"].astype(np.float64) - reference["features"]).max())
        fscale = max(1.0, float(np.abs(reference["features"]).max()))
        metrics["features_max_abs_diff"] = fdiff
        if np.isfinite(tol["max_abs_rel"]):
            checks.append(Check("features_max_abs_diff", fdiff, tol["max_abs_rel"] * fscale, False))
    return ValidationReport(tuple(checks), metrics)


def _batch_consistency(runner: Runner, images: np.ndarray) -> dict[str, float]:
    """Identical rows must give identical rows; batch 1 must equal the same row of batch 64."""
    same = np.repeat(images[:1], 64, axis=0)
    rows = runner.infer(same)["logits"].astype(np.float64)
    batch64 = np.resize(images, (64, *images.shape[1:])).astype(np.float32)
    full = runner.infer(batch64)["logits"].astype(np.float64)
    single = runner.infer(batch64[5:6])["logits"].astype(np.float64)
    return {
        "identical_rows_spread": float(np.abs(rows - rows[0]).max()),
        "batch1_vs_batch64": float(np.abs(single[0] - full[5]).max()),
    }
