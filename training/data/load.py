"""``load_dataset``: read a registered dataset, subset it, carve validation, attach transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import DataSplits, ImageDataset
from .cache import cache_root, cached_source
from .raw import DatasetSpec, FileSource
from .rows import check_args, run_rows
from .transforms import (
    describe_eval,
    describe_train_augmentation,
    eval_transform,
    resize_size,
    train_transform,
)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    limit: int | None = None,
    augment: bool = True,
    cache: str = "off",
) -> DataSplits:
    """Load ``name`` from its official layout under ``data_dir`` (never downloaded).

    Args:
        val_fraction: stratified share of the train pool held out as validation, chosen by ``seed``.
        seed: the run seed; it only decides the validation carve-out.
        image_size: square input size; defaults to the dataset's own.
        limit: keep at most this many train-pool and this many test images (smoke runs, tests).
        augment: the dataset's random train augmentation; without it, train images get the
            eval transform (the same for every method of a comparison).
        cache: where file-backed images are decoded once ("auto", "off" or a folder; cache.py).
    """
    check_args(val_fraction, image_size, limit)
    rows = run_rows(name, data_dir, val_fraction=val_fraction, seed=seed, limit=limit)
    spec, raw = rows.spec, rows.raw
    size = image_size or spec.image_size
    train_rows, val_rows, test_rows = rows.train, rows.val, rows.test
    pool, test_source, note = _cached(raw, spec, size, cache, train_rows, val_rows, test_rows)

    evaluate = eval_transform(spec, size)
    train = ImageDataset(pool, train_rows, train_transform(spec, size) if augment else evaluate)
    return DataSplits(
        name=spec.name,
        class_names=raw.class_names,
        image_size=size,
        mean=spec.mean,
        std=spec.std,
        train=train,
        train_eval=train.with_transform(evaluate),
        val=ImageDataset(pool, val_rows, evaluate),
        test=ImageDataset(test_source, test_rows, evaluate),
        preprocessing=_describe(spec, size, val_fraction, seed, limit, augment),
        split_sizes={"train": len(train_rows), "val": len(val_rows), "test": len(test_rows)},
        cache_note=note,
    )


def _cached(raw, spec: DatasetSpec, size: int, cache: str, train_rows, val_rows, test_rows):
    """The train pool and test sources, read from the decoded-image cache where files back them."""
    root = cache_root(cache)
    pool, test = raw.train, raw.test
    if root is None:
        return pool, test, "off"
    notes = []
    resize = resize_size(spec, size)
    if isinstance(pool, FileSource) and len(train_rows) + len(val_rows):
        pool, note = cached_source(pool, np.concatenate([train_rows, val_rows]), resize, root)
        notes.append(f"train pool: {note}")
    if isinstance(test, FileSource) and len(test_rows):
        test, note = cached_source(test, test_rows, resize, root)
        notes.append(f"test: {note}")
    return pool, test, "; ".join(notes) or "not needed (images held in memory)"


def _describe(
    spec: DatasetSpec, size: int, val_fraction: float, seed: int, limit: int | None, augment: bool
) -> dict[str, Any]:
    return {
        "source": spec.source,
        "eval": describe_eval(spec, size),
        "train_augmentation": describe_train_augmentation(spec, size) if augment else [],
        "split": {
            "val": f"stratified {val_fraction:g} of the train pool, seed {seed}",
            "test": spec.test_split,
            "limit": limit,
        },
    }
