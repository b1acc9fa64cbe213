"""CUB-200-2011 birds from ``CUB_200_2011/`` with its official train/test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abrl_deploy.errors import DatasetError

from .layout import dataset_root, inside, parse_int, read_rows, require_dir
from .raw import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec, FileSource, RawDataset
from .registry import register_dataset

_LAYOUT = (
    "<dir>/CUB_200_2011/ with images.txt ('id path'), image_class_labels.txt ('id class'), "
    "train_test_split.txt ('id is_train'), classes.txt ('id name') and images/ (1-based ids)"
)


def _id_table(path: Path) -> dict[int, str]:
    """A two-column 'id value' file as {id: value}; a repeated id is an error."""
    table: dict[int, str] = {}
    for key, value in read_rows(path, 2, _LAYOUT, None, 1):
        image_id = parse_int(key, path, "id")
        if image_id in table:
            raise DatasetError(f"{path}: id {image_id} is listed twice")
        table[image_id] = value
    return table


def _class_names(root: Path) -> tuple[str, ...]:
    path = root / "classes.txt"
    table = _id_table(path)
    if sorted(table) != list(range(1, len(table) + 1)):
        raise DatasetError(f"{path}: class ids must be 1..{len(table)}")
    # "001.Black_footed_Albatross" -> "Black_footed_Albatross"
    return tuple(table[i].split(".", 1)[-1] for i in range(1, len(table) + 1))


def _rows(root: Path, num_classes: int) -> tuple[list[str], list[int], list[bool]]:
    images = _id_table(root / "images.txt")
    classes = _id_table(root / "image_class_labels.txt")
    is_train = _id_table(root / "train_test_split.txt")
    for name, table in (("image_class_labels.txt", classes), ("train_test_split.txt", is_train)):
        if table.keys() != images.keys():
            raise DatasetError(f"{root / name}: its ids differ from those of images.txt")
    folder = require_dir(root / "images", _LAYOUT)
    paths, labels, train = [], [], []
    for image_id in sorted(images):
        label = parse_int(classes[image_id], root / "image_class_labels.txt", "class")
        if not 1 <= label <= num_classes:
            raise DatasetError(
                f"{root / 'image_class_labels.txt'}: class {label} is not in classes.txt"
            )
        paths.append(str(inside(folder, images[image_id], root / "images.txt")))
        labels.append(label - 1)
        train.append(parse_int(is_train[image_id], root / "train_test_split.txt", "is_train") == 1)
    return paths, labels, train


def read_cub200(data_dir: Path | None) -> RawDataset:
    """Read the id tables, check every listed image exists, and split by train_test_split.txt."""
    root = dataset_root(data_dir, "CUB_200_2011", _LAYOUT)
    names = _class_names(root)
    paths, labels, train = _rows(root, len(names))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} images listed in images.txt are missing: {missing[0]}")

    def source(want: bool) -> FileSource:
        rows = [i for i, t in enumerate(train) if t == want]
        return FileSource(
            paths=tuple(paths[i] for i in rows),
            labels=np.asarray([labels[i] for i in rows], dtype=np.int64),
        )

    return RawDataset(train=source(True), test=source(False), class_names=names)


CUB200 = register_dataset(
    DatasetSpec(
        name="cub200",
        read=read_cub200,
        layout=_LAYOUT,
        source="CUB-200-2011 (CUB_200_2011/), official train_test_split.txt",
        image_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize_ratio=256 / 224,
    )
)
