"""The evaluation images of a bench: the test split of the model's dataset, preprocessed as its
card says (the same tensors for every backend), and the timing batch taken from them. Torch-free:
a bench of ONNX files needs the runtime and bench extras (onnx reads each file's description), not
torch."""

from __future__ import annotations

import numpy as np

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError

ALL = 10**9


def eval_images(
    card: ModelCard, data_dir: str | None, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` test images as float32 NCHW through the card's preprocessing, and labels.

    An abrl model gets its run's own test rows; a model without a card (its card built from
    flags) gets the dataset's test split through exactly the steps its flags state.
    """
    from abrl_deploy.export.images import run_images

    images, labels = run_images(card, "test", limit or ALL, data_dir)
    classes = int(labels.max()) + 1
    if classes > card.num_classes:
        raise ConfigError(
            f"{card.dataset} has labels up to {classes - 1} but the model has {card.num_classes} "
            "outputs; pick the dataset it was trained on with --dataset"
        )
    return images, labels


def to_layout(images: np.ndarray, layout: str) -> np.ndarray:
    """NCHW images in the model's layout, contiguous."""
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1) if layout == "NHWC" else images)


def timing_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` evaluation images, repeated when the split is smaller."""
    reps = -(-batch // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:batch])
