"""The torch-free pieces of every dataset: image sources, what a reader returns, and the spec a
dataset registers. ``abrl bench`` reads evaluation images through these without torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageSource(Protocol):
    """Rows of images with integer labels; ``image(i)`` gives an RGB PIL image."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def image(self, index: int) -> Image.Image: ...


@dataclass(frozen=True, eq=False)
class ArraySource:
    """Images held in memory as uint8 ``[N, H, W, 3]`` (CIFAR, digits)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


@dataclass(frozen=True, eq=False)
class FileSource:
    """Images decoded lazily from files; greyscale and palette images become RGB."""

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as img:
            return img.convert("RGB")


@dataclass(frozen=True)
class RawDataset:
    """What a reader returns: the official train pool and test split, before any subsetting."""

    train: ImageSource
    test: ImageSource
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read and preprocessed; registered by name.

    Attributes:
        read: reads ``data_dir`` (None only when ``needs_dir`` is False) into a RawDataset.
        resize_ratio: eval resizes the shorter side to ``round(ratio * size)`` then centre-crops.
        pad_fraction: train RandomCrop padding as a fraction of the size (0: no padding).
    """

    name: str
    read: Callable[[Path | None], RawDataset]
    layout: str
    source: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_ratio: float = 1.0
    pad_fraction: float = 0.0
    hflip: bool = True
    needs_dir: bool = True
    test_split: str = "official test split"
