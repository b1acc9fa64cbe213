"""Accuracy of every backend on the same images, and agreement with a reference backend."""

from __future__ import annotations

import numpy as np

from abrl_deploy.runtime.base import Runner


def predict_all(runner: Runner, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits for ``images`` in batches of exactly ``batch`` (the last one padded by repetition,
    so that fixed-batch models and TensorRT profiles see only the benchmarked shape)."""
    dtype = runner.input_spec.dtype
    out = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - n, axis=0)])
        # the first output is the logits (ours; third-party classifiers put them first too)
        logits = runner.infer(chunk.astype(dtype, copy=False))[runner.output_names[0]]
        out.append(np.asarray(logits, dtype=np.float64)[:n])
    return np.concatenate(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | int | None]:
    """Top-1 and top-5 in percent (top-5 is None with fewer than 6 classes: it would be trivial)."""
    top1 = float(np.mean(logits.argmax(1) == labels) * 100)
    top5 = None
    if logits.shape[1] > 5:
        best5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        top5 = float(np.mean((best5 == labels[:, None]).any(1)) * 100)
    return {"images": len(labels), "top1": top1, "top5": top5}


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far one backend's logits are from the reference's on the same images."""
    diff = np.abs(logits - reference)
    num = (logits * reference).sum(1)
    den = np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = num / np.maximum(den, 1e-30)
    return {
        "top1_flip_rate": float(np.mean(logits.argmax(1) != reference.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
    }
