"""The shared pieces of every dataset: image sources, the row dataset and the split bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

Transform = Callable[[Image.Image], Tensor]

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


class ImageDataset(Dataset):
    """A subset of a source's rows under one transform: ``(transform(image), int label)``.

    Holds only plain arrays, paths and torchvision transforms, so it pickles for DataLoader workers.
    """

    def __init__(self, source: ImageSource, indices: Sequence[int], transform: Transform) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        row = int(self.indices[index])
        return self.transform(self.source.image(row)), int(self.source.labels[row])

    @property
    def labels(self) -> np.ndarray:
        """The labels of this subset's rows, in order (no decoding)."""
        return self.source.labels[self.indices]

    def with_transform(self, transform: Transform) -> ImageDataset:
        """The same rows under another transform."""
        return ImageDataset(self.source, self.indices, transform)


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


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test datasets of one run, with the preprocessing that made them."""

    name: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train: ImageDataset
    train_eval: ImageDataset
    val: ImageDataset
    test: ImageDataset
    preprocessing: dict[str, Any] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_views(self, transform: Transform) -> ImageDataset:
        """The train rows under another transform, e.g. a SimCLR two-view augmentation."""
        return self.train.with_transform(transform)
