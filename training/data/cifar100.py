"""CIFAR-100 from the official python version: ``cifar-100-python/{train,test,meta}`` pickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.errors import DatasetError

from .layout import dataset_root, require_file
from .raw import ArraySource, DatasetSpec, RawDataset
from .registry import register_dataset
from .safe_pickle import load_safe_pickle

_LAYOUT = "<dir>/cifar-100-python/{train,test,meta} (the official CIFAR-100 python version)"


def _get(record: Any, key: str, path: Path) -> Any:
    # The official files are Python 2 pickles with bytes keys; re-pickled copies may use str.
    if isinstance(record, dict):
        for k in (key.encode(), key):
            if k in record:
                return record[k]
    raise DatasetError(f"{path}: no {key!r} entry; expected {_LAYOUT}")


def _read_split(path: Path) -> ArraySource:
    record = load_safe_pickle(require_file(path, _LAYOUT))
    data = np.asarray(_get(record, "data", path))
    labels = np.asarray(_get(record, "fine_labels", path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(
            f"{path}: 'data' is {data.dtype} {list(data.shape)}; expected uint8 [N, 3072]"
        )
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} fine_labels")
    # Rows are channel-planar (1024 R, 1024 G, 1024 B); PIL wants HWC.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return ArraySource(images=images, labels=labels)


def _read_names(path: Path) -> tuple[str, ...]:
    names = _get(load_safe_pickle(require_file(path, _LAYOUT)), "fine_label_names", path)
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def read_cifar100(data_dir: Path | None) -> RawDataset:
    """Read the train and test pickles and the fine class names."""
    root = dataset_root(data_dir, "cifar-100-python", _LAYOUT)
    train, test = _read_split(root / "train"), _read_split(root / "test")
    names = _read_names(root / "meta")
    for split, path in ((train, root / "train"), (test, root / "test")):
        if len(split) and not 0 <= split.labels.min() <= split.labels.max() < len(names):
            raise DatasetError(f"{path}: fine_labels outside 0..{len(names) - 1}")
    return RawDataset(train=train, test=test, class_names=names)


CIFAR100 = register_dataset(
    DatasetSpec(
        name="cifar100",
        read=read_cifar100,
        layout=_LAYOUT,
        source="CIFAR-100 python version (cifar-100-python/{train,test,meta}), fine labels",
        image_size=32,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        pad_fraction=1 / 8,
    )
)
