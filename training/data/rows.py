"""Which images of a dataset a run uses, torch-free: the rows ``load_dataset`` trains and
evaluates on, read the same way by export (calibration, validation), ``abrl optimize`` and
``abrl bench`` (which needs no torch to read images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abrl_deploy.errors import ConfigError, DatasetError

from .raw import DatasetSpec, ImageSource, RawDataset
from .registry import get_dataset_spec
from .splits import limit_rows, split_off

# ``limit`` subsets use a fixed seed so smoke runs with different run seeds see the same images.
LIMIT_SEED = 0


@dataclass(frozen=True)
class RunRows:
    """A dataset as read, and the row indices of each split of one run."""

    spec: DatasetSpec
    raw: RawDataset
    train: np.ndarray  # rows of raw.train
    val: np.ndarray  # rows of raw.train, held out
    test: np.ndarray  # rows of raw.test

    def split(self, name: str) -> tuple[ImageSource, np.ndarray]:
        """(source, rows) of "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"split {name!r}: expected train, val or test")
        return (self.raw.test if name == "test" else self.raw.train), getattr(self, name)


def check_args(val_fraction: float, image_size: int | None, limit: int | None) -> None:
    problems = []
    if not 0.0 <= val_fraction < 1.0:
        problems.append(f"val_fraction must be in [0, 1), got {val_fraction}")
    if image_size is not None and image_size < 1:
        problems.append(f"image_size must be a positive integer, got {image_size}")
    if limit is not None and limit < 1:
        problems.append(f"limit must be a positive integer, got {limit}")
    if problems:
        raise ConfigError("; ".join(problems))


def resolve_dir(spec: DatasetSpec, data_dir: str | Path | None) -> Path | None:
    if not spec.needs_dir:
        return None  # embedded data: a given directory is not used
    if data_dir is None:
        raise DatasetError(
            f"dataset {spec.name!r} needs --data-dir: a directory holding {spec.layout}"
        )
    return Path(data_dir).expanduser()


def run_rows(
    name: str, data_dir: str | Path | None, *, val_fraction: float, seed: int, limit: int | None
) -> RunRows:
    """Read ``name`` and pick a run's rows: ``limit`` (stratified, fixed seed) of the train pool
    and of the test split, then the validation carve-out of the pool by the run ``seed``."""
    check_args(val_fraction, None, limit)
    spec = get_dataset_spec(name)
    raw = spec.read(resolve_dir(spec, data_dir))
    pool = limit_rows(raw.train.labels, limit, LIMIT_SEED)
    test = limit_rows(raw.test.labels, limit, LIMIT_SEED)
    kept, held = split_off(raw.train.labels[pool], val_fraction, seed)
    return RunRows(spec, raw, pool[kept], pool[held], test)


def sample_order(rows: int, n: int) -> np.ndarray:
    """The first ``n`` of ``rows`` positions in a fixed shuffle: every reader of a split (export
    validation and calibration, bench, optimize) samples the same images."""
    return np.random.default_rng(0).permutation(rows)[:n]
