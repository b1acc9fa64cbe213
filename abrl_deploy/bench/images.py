"""The evaluation images of a bench: the test split of the model's dataset, preprocessed as its
card says (the same tensors for every backend), and the timing batch taken from them."""

from __future__ import annotations

import importlib.util

import numpy as np

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, DependencyError

ALL = 10**9


def eval_images(
    card: ModelCard, data_dir: str | None, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` test images as float32 NCHW normalised with the card's mean/std, and labels.

    The dataset loader normalises with the dataset's own statistics; a third-party model may want
    others, so the images are mapped back to [0, 1] pixels and normalised again as the card says.
    """
    if importlib.util.find_spec("torch") is None:
        raise DependencyError(
            "abrl bench reads the test images with abrl's dataset loaders, which need PyTorch; "
            "pip install 'abrl[train]'"
        )
    from abrl_deploy.export.images import run_images
    from abrl_deploy.training.data import get_dataset_spec

    images, labels = run_images(card, "test", limit or ALL, data_dir)
    spec = get_dataset_spec(card.dataset)
    classes = int(labels.max()) + 1
    if classes > card.num_classes:
        raise ConfigError(
            f"{card.dataset} has labels up to {classes - 1} but the model has {card.num_classes} "
            "outputs; pick the dataset it was trained on with --dataset"
        )
    if tuple(spec.mean) != tuple(card.mean) or tuple(spec.std) != tuple(card.std):
        shape = (1, 3, 1, 1)
        ds_mean, ds_std = np.reshape(spec.mean, shape), np.reshape(spec.std, shape)
        mean, std = np.reshape(card.mean, shape), np.reshape(card.std, shape)
        images = ((images * ds_std + ds_mean - mean) / std).astype(np.float32)
    return images, labels


def to_layout(images: np.ndarray, layout: str) -> np.ndarray:
    """NCHW images in the model's layout, contiguous."""
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1) if layout == "NHWC" else images)


def timing_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` evaluation images, repeated when the split is smaller."""
    reps = -(-batch // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:batch])
