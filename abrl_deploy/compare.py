"""The one comparator: a runner's outputs on many images in batches, and how far one set of
logits is from another. Export's validation, the bench, optimize and the Predictor all use it, so
"agreement" means the same numbers everywhere. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Infer = Callable[[np.ndarray], dict[str, np.ndarray]]


def run_batches(infer: Infer, images: np.ndarray, batch: int, *, pad: bool = False,
                dtype: np.dtype | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Every output of ``infer`` on ``images``, ``batch`` rows at a time, concatenated.

    ``pad``: the last batch is filled up to exactly ``batch`` rows by repeating its first row
    (fixed-batch models and TensorRT profiles see only the shape they were built for); the
    padding rows are dropped from the result. ``dtype``: the input dtype the model takes.
    """
    parts: list[dict[str, np.ndarray]] = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        n = len(chunk)
        if pad and n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - n, axis=0)])
        if dtype is not None:
            chunk = chunk.astype(dtype, copy=False)
        parts.append({k: np.asarray(v)[:n] for k, v in infer(chunk).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64 (0 for an all-zero row)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(1) / np.maximum(denom, 1e-30)


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far ``logits`` are from ``reference`` on the same images."""
    diff = np.abs(np.asarray(logits, np.float64) - np.asarray(reference, np.float64))
    cos = cosines(logits, reference)
    return {
        "top1_flip_rate": float(np.mean(logits.argmax(1) != reference.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
    }
