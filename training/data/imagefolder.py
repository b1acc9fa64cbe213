"""Users' own data: ``<dir>/train/<class>/*`` and ``<dir>/test/<class>/*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abrl_deploy.errors import DatasetError

from .layout import IMAGE_EXTENSIONS, list_images, require_dir
from .raw import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec, FileSource, RawDataset
from .registry import register_dataset

_LAYOUT = (
    "<dir>/train/<class>/<image> and <dir>/test/<class>/<image> "
    f"(images: {', '.join(IMAGE_EXTENSIONS)})"
)


def _read_split(folder: Path, classes: list[str]) -> FileSource:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = list_images(folder / name) if (folder / name).is_dir() else []
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return FileSource(paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64))


def read_imagefolder(data_dir: Path | None) -> RawDataset:
    """Classes are train/'s subfolders, sorted; test/ may lack some but not add new ones."""
    if data_dir is None:
        raise DatasetError(f"no data directory given; expected {_LAYOUT}")
    train_dir = require_dir(Path(data_dir) / "train", _LAYOUT)
    test_dir = require_dir(Path(data_dir) / "test", _LAYOUT)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"{train_dir} has no class folders; expected {_LAYOUT}")
    unknown = sorted({p.name for p in test_dir.iterdir() if p.is_dir()} - set(classes))
    if unknown:
        raise DatasetError(f"{test_dir}: classes {unknown} are not in {train_dir}")
    train = _read_split(train_dir, classes)
    empty = [c for i, c in enumerate(classes) if not (train.labels == i).any()]
    if empty:
        raise DatasetError(f"{train_dir}: class folders without images: {empty}")
    test = _read_split(test_dir, classes)
    if len(test) == 0:
        raise DatasetError(f"{test_dir} holds no images; expected {_LAYOUT}")
    return RawDataset(train=train, test=test, class_names=tuple(classes))


IMAGEFOLDER = register_dataset(
    DatasetSpec(
        name="imagefolder",
        read=read_imagefolder,
        layout=_LAYOUT,
        source="image folders (train/<class>/*, test/<class>/*), classes sorted by name",
        image_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize_ratio=256 / 224,
    )
)
