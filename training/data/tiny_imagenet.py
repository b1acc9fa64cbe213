"""Tiny ImageNet (200 classes, 64x64) from ``tiny-imagenet-200/``; its val split is our test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abrl_deploy.errors import DatasetError

from .layout import dataset_root, inside, list_images, read_rows, require_dir, require_file
from .raw import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec, FileSource, RawDataset
from .registry import register_dataset

_LAYOUT = (
    "<dir>/tiny-imagenet-200/ with wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG and val/val_annotations.txt (file<TAB>wnid<TAB>box)"
)


def _class_names(root: Path, wnids: list[str]) -> tuple[str, ...]:
    """The first synonym from words.txt for each wnid (the wnid itself when absent)."""
    words = root / "words.txt"
    names = {}
    if words.is_file():  # names are a nicety; the wnids define the classes
        names = {r[0]: r[1].split(",")[0].strip() for r in read_rows(words, 2, _LAYOUT, "\t", 1)}
    out = [names.get(w, w) for w in wnids]
    # Two wnids can share a first synonym; keep names unique by adding the wnid.
    return tuple(n if out.count(n) == 1 else f"{n} ({w})" for n, w in zip(out, wnids, strict=True))


def _read_train(root: Path, wnids: list[str]) -> FileSource:
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = require_dir(root / "train" / wnid / "images", _LAYOUT)
        files = list_images(folder)
        if not files:
            raise DatasetError(f"{folder} holds no images; expected {_LAYOUT}")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return FileSource(paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64))


def _read_val(root: Path, wnids: list[str]) -> FileSource:
    annotations = root / "val" / "val_annotations.txt"
    images = require_dir(root / "val" / "images", _LAYOUT)
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels, missing = [], [], []
    for name, wnid, *_ in read_rows(annotations, 2, _LAYOUT, "\t"):
        if wnid not in index:
            raise DatasetError(f"{annotations}: {name} has wnid {wnid!r}, not in wnids.txt")
        path = inside(images, name, annotations)
        missing += [] if path.is_file() else [name]
        paths.append(str(path))
        labels.append(index[wnid])
    if missing:
        raise DatasetError(
            f"{images}: {len(missing)} annotated images are missing (e.g. {missing[0]})"
        )
    return FileSource(paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64))


def read_tiny_imagenet(data_dir: Path | None) -> RawDataset:
    """Classes in wnids.txt order; train from train/, test from the official val/."""
    root = dataset_root(data_dir, "tiny-imagenet-200", _LAYOUT)
    wnids = [r[0] for r in read_rows(require_file(root / "wnids.txt", _LAYOUT), 1, _LAYOUT)]
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{root / 'wnids.txt'}: a wnid is listed twice")
    return RawDataset(
        train=_read_train(root, wnids),
        test=_read_val(root, wnids),
        class_names=_class_names(root, wnids),
    )


TINY_IMAGENET = register_dataset(
    DatasetSpec(
        name="tiny-imagenet",
        read=read_tiny_imagenet,
        layout=_LAYOUT,
        source="Tiny ImageNet 200 (tiny-imagenet-200/), test split = the official val/",
        image_size=64,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pad_fraction=1 / 8,
        test_split="official val/ split (val_annotations.txt)",
    )
)
