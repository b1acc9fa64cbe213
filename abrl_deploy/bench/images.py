"""The evaluation images of a bench: the test split of the model's dataset, preprocessed as its
card says (the same tensors for every backend), and the timing batch taken from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, DatasetError, DependencyError

ALL = 10**9


def eval_images(
    card: ModelCard, data_dir: str | None, limit: int | None, *, from_card: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` test images as float32 NCHW normalised with the card's mean/std, and labels.

    An abrl model (``from_card``) gets its run's own split through training's eval transform; the
    dataset loader normalises with the dataset's statistics, so the images are mapped back to
    [0, 1] pixels and normalised again as the card says. A model without a card gets the
    dataset's files through exactly the steps its card-from-flags states (no hidden resize).
    """
    if importlib.util.find_spec("torch") is None:
        raise DependencyError(
            "abrl bench reads the test images with abrl's dataset loaders, which need PyTorch; "
            "pip install 'abrl[train]'"
        )
    from abrl_deploy.export.images import run_images, sample_order
    from abrl_deploy.training.data import get_dataset_spec

    spec = get_dataset_spec(card.dataset)
    if not from_card:
        return _stated_steps(card, spec, data_dir, limit, sample_order)
    images, labels = run_images(card, "test", limit or ALL, data_dir)
    _check_classes(card, labels)
    if tuple(spec.mean) != tuple(card.mean) or tuple(spec.std) != tuple(card.std):
        shape = (1, 3, 1, 1)
        ds_mean, ds_std = np.reshape(spec.mean, shape), np.reshape(spec.std, shape)
        mean, std = np.reshape(card.mean, shape), np.reshape(card.std, shape)
        images = ((images * ds_std + ds_mean - mean) / std).astype(np.float32)
    return images, labels


def _check_classes(card: ModelCard, labels: np.ndarray) -> None:
    classes = int(labels.max()) + 1
    if classes > card.num_classes:
        raise ConfigError(
            f"{card.dataset} has labels up to {classes - 1} but the model has {card.num_classes} "
            "outputs; pick the dataset it was trained on with --dataset"
        )


def _stated_steps(card: ModelCard, spec, data_dir: str | None, limit: int | None, sample_order):
    """The test split's files through the card's stated preprocessing (``Preprocessor``)."""
    from abrl_deploy.preprocess import Preprocessor

    if spec.needs_dir and data_dir is None:
        raise DatasetError(
            f"dataset {spec.name!r} needs --data-dir: a directory holding {spec.layout}"
        )
    test = spec.read(Path(data_dir).expanduser() if spec.needs_dir else None).test
    rows = sample_order(len(test), limit or ALL)
    pre = Preprocessor(card)
    labels = np.asarray(test.labels)[rows]
    _check_classes(card, labels)
    return np.stack([pre.pil(test.image(i)) for i in rows]).astype(np.float32), labels


def to_layout(images: np.ndarray, layout: str) -> np.ndarray:
    """NCHW images in the model's layout, contiguous."""
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1) if layout == "NHWC" else images)


def timing_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """The first ``batch`` evaluation images, repeated when the split is smaller."""
    reps = -(-batch // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:batch])
