"""``load_dataset``: read a registered dataset, subset it, carve validation, attach transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError, DatasetError

from .base import DatasetSpec, DataSplits, ImageDataset
from .registry import get_dataset_spec
from .splits import limit_rows, split_off
from .transforms import describe_eval, describe_train_augmentation, eval_transform, train_transform

# ``limit`` subsets use a fixed seed so smoke runs with different run seeds see the same images.
_LIMIT_SEED = 0


def _check_args(val_fraction: float, image_size: int | None, limit: int | None) -> None:
    problems = []
    if not 0.0 <= val_fraction < 1.0:
        problems.append(f"val_fraction must be in [0, 1), got {val_fraction}")
    if image_size is not None and image_size < 1:
        problems.append(f"image_size must be a positive integer, got {image_size}")
    if limit is not None and limit < 1:
        problems.append(f"limit must be a positive integer, got {limit}")
    if problems:
        raise ConfigError("; ".join(problems))


def _resolve_dir(spec: DatasetSpec, data_dir: str | Path | None) -> Path | None:
    if not spec.needs_dir:
        return None  # embedded data: a given directory is not used
    if data_dir is None:
        raise DatasetError(
            f"dataset {spec.name!r} needs --data-dir: a directory holding {spec.layout}"
        )
    return Path(data_dir).expanduser()


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    limit: int | None = None,
    augment: bool = True,
) -> DataSplits:
    """Load ``name`` from its official layout under ``data_dir`` (never downloaded).

    Args:
        val_fraction: stratified share of the train pool held out as validation, chosen by ``seed``.
        seed: the run seed; it only decides the validation carve-out.
        image_size: square input size; defaults to the dataset's own.
        limit: keep at most this many train-pool and this many test images (smoke runs, tests).
        augment: the dataset's random train augmentation; without it, train images get the
            eval transform (the same for every method of a comparison).
    """
    _check_args(val_fraction, image_size, limit)
    spec = get_dataset_spec(name)
    raw = spec.read(_resolve_dir(spec, data_dir))
    size = image_size or spec.image_size

    pool = limit_rows(raw.train.labels, limit, _LIMIT_SEED)
    test_rows = limit_rows(raw.test.labels, limit, _LIMIT_SEED)
    kept, held = split_off(raw.train.labels[pool], val_fraction, seed)
    train_rows, val_rows = pool[kept], pool[held]

    evaluate = eval_transform(spec, size)
    train = ImageDataset(
        raw.train, train_rows, train_transform(spec, size) if augment else evaluate
    )
    return DataSplits(
        name=spec.name,
        class_names=raw.class_names,
        image_size=size,
        mean=spec.mean,
        std=spec.std,
        train=train,
        train_eval=train.with_transform(evaluate),
        val=ImageDataset(raw.train, val_rows, evaluate),
        test=ImageDataset(raw.test, test_rows, evaluate),
        preprocessing=_describe(spec, size, val_fraction, seed, limit, augment),
        split_sizes={"train": len(train_rows), "val": len(val_rows), "test": len(test_rows)},
    )


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
