"""Tiny datasets in the official on-disk layouts, generated for tests (no downloads).

Every image is a class-dependent colour plus noise, so a classifier can learn them.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def class_colour(label: int, n_classes: int) -> np.ndarray:
    """A distinct RGB colour per class."""
    t = label / max(n_classes - 1, 1)
    return np.array([255 * t, 255 * (1 - t), 128 + 127 * np.sin(6.28 * t)], dtype=np.float64)


def _pixels(rng: np.random.Generator, label: int, n_classes: int, h: int, w: int) -> np.ndarray:
    noise = rng.normal(0.0, 20.0, size=(h, w, 3))
    return np.clip(class_colour(label, n_classes) + noise, 0, 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels)
    (img.convert("L") if grey else img).save(path)


class _Python2Pickler(pickle._Pickler):
    """Writes protocol 2 as Python 2 did: bytes and str as BINSTRING, numpy under numpy.core.

    The official CIFAR files were written so; Python 3's protocol 2 instead encodes bytes through
    ``_codecs.encode``.
    """

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = "numpy.core.multiarray" if obj.__name__ == "_reconstruct" else "numpy"
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _dump(obj: Any, path: Path, python2: bool) -> None:
    with open(path, "wb") as f:
        (_Python2Pickler if python2 else pickle.Pickler)(f, protocol=2).dump(obj)


def write_cifar100(
    root: Path,
    n_per_class: int = 4,
    n_classes: int = 5,
    test_per_class: int = 2,
    str_keys: bool = False,
    python2: bool = True,
) -> Path:
    """``root/cifar-100-python/{train,test,meta}``: protocol-2 pickles, bytes keys, CHW rows.

    ``python2`` writes them as the official (Python 2) files are; ``str_keys`` as a re-pickled
    Python 3 copy might be.
    """
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)

    def key(name: str) -> bytes | str:
        return name if str_keys else name.encode()

    for split, per_class in (("train", n_per_class), ("test", test_per_class)):
        labels = [c for c in range(n_classes) for _ in range(per_class)]
        images = np.stack([_pixels(rng, c, n_classes, 32, 32) for c in labels])
        rows = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # channel-planar rows
        record = {
            key("filenames"): [f"img_{i}.png".encode() for i in range(len(labels))],
            key("fine_labels"): labels,
            key("coarse_labels"): [c // 5 for c in labels],
            key("data"): rows,
        }
        _dump(record, folder / split, python2)
    meta = {
        key("fine_label_names"): [f"fine_{c}".encode() for c in range(n_classes)],
        key("coarse_label_names"): [b"coarse_0"],
    }
    _dump(meta, folder / "meta", python2)
    return root


def write_tiny_imagenet(
    root: Path, n_classes: int = 3, n_per_class: int = 4, val_per_class: int = 2, size: int = 16
) -> Path:
    """``root/tiny-imagenet-200/``; every third image is a greyscale JPEG."""
    rng = np.random.default_rng(1)
    base = root / "tiny-imagenet-200"
    wnids = [f"n{1000 + c:08d}" for c in range(n_classes)]
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    # words.txt covers more wnids than the dataset uses, as the real one does.
    words = [f"{w}\tthing {c}, other name\n" for c, w in enumerate(wnids)] + ["n99999999\tunused\n"]
    (base / "words.txt").write_text("".join(words))
    count = 0
    for c, wnid in enumerate(wnids):
        boxes = []
        for i in range(n_per_class):
            name = f"{wnid}_{i}.JPEG"
            _save(
                base / "train" / wnid / "images" / name,
                _pixels(rng, c, n_classes, size, size),
                grey=count % 3 == 0,
            )
            boxes.append(f"{name}\t0\t0\t{size - 1}\t{size - 1}\n")
            count += 1
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    for k in range(n_classes * val_per_class):
        c = k % n_classes
        _save(
            base / "val" / "images" / f"val_{k}.JPEG",
            _pixels(rng, c, n_classes, size, size),
            grey=k % 3 == 0,
        )
        lines.append(f"val_{k}.JPEG\t{wnids[c]}\t0\t1\t{size - 2}\t{size - 1}\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def write_cub200(root: Path, n_classes: int = 3, n_per_class: int = 4) -> Path:
    """``root/CUB_200_2011/``: id tables (1-based) and images of varying size; every other image
    of a class is in the train split."""
    rng = np.random.default_rng(2)
    base = root / "CUB_200_2011"
    base.mkdir(parents=True, exist_ok=True)
    classes, images, labels, split = [], [], [], []
    image_id = 0
    for c in range(n_classes):
        folder = f"{c + 1:03d}.Bird_{c}"
        classes.append(f"{c + 1} {folder}\n")
        for i in range(n_per_class):
            image_id += 1
            rel = f"{folder}/Bird_{c}_{i:04d}_{image_id}.jpg"
            h, w = 20 + 4 * i, 30 - 2 * i
            _save(base / "images" / rel, _pixels(rng, c, n_classes, h, w))
            images.append(f"{image_id} {rel}\n")
            labels.append(f"{image_id} {c + 1}\n")
            split.append(f"{image_id} {1 if i % 2 == 0 else 0}\n")
    for name, lines in (
        ("classes.txt", classes),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
    ):
        (base / name).write_text("".join(lines))
    return root


def write_imagefolder(
    root: Path, n_classes: int = 3, n_per_class: int = 4, test_per_class: int = 2
) -> Path:
    """``root/{train,test}/<class>/*`` with PNG and JPEG files of varying size."""
    rng = np.random.default_rng(3)
    for split, per_class in (("train", n_per_class), ("test", test_per_class)):
        for c in range(n_classes):
            for i in range(per_class):
                ext = "png" if i % 2 == 0 else "jpg"
                pixels = _pixels(rng, c, n_classes, 12 + 2 * i, 18)
                _save(root / split / f"class_{chr(ord('a') + c)}" / f"{i}.{ext}", pixels)
    (root / "train" / "class_a" / "notes.txt").write_text("not an image")
    return root
