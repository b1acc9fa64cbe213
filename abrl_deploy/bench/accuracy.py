"""Accuracy of every backend on the same images; agreement with a reference is
``abrl_deploy.compare.agreement``, the one comparator."""

from __future__ import annotations

import numpy as np

from abrl_deploy.compare import run_batches
from abrl_deploy.runtime.base import Runner


def predict_all(runner: Runner, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits (float64) for ``images`` in batches of exactly ``batch``, the last one padded, so
    that fixed-batch models and TensorRT profiles see only the benchmarked shape."""
    out = run_batches(runner.infer, images, batch, pad=True, dtype=runner.input_spec.dtype)
    # the first output is the logits (ours; third-party classifiers put them first too)
    return out[runner.output_names[0]].astype(np.float64)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | int | None]:
    """Top-1 and top-5 in percent (top-5 is None with fewer than 6 classes: it would be trivial)."""
    top1 = float(np.mean(logits.argmax(1) == labels) * 100)
    top5 = None
    if logits.shape[1] > 5:
        best5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        top5 = float(np.mean((best5 == labels[:, None]).any(1)) * 100)
    return {"images": len(labels), "top1": top1, "top5": top5}
