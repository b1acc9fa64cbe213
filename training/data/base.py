"""The torch side of a dataset: the row dataset under a transform, and a run's split bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .raw import ImageSource

Transform = Callable[[Image.Image], Tensor]


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
    cache_note: str = "off"  # what the decoded-image cache did (data/cache.py)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_views(self, transform: Transform) -> ImageDataset:
        """The train rows under another transform, e.g. a SimCLR two-view augmentation."""
        return self.train.with_transform(transform)
