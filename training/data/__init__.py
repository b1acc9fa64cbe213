"""Datasets read from their official on-disk layouts (never downloaded), split and transformed.

Importing this package registers every dataset module below.
"""

from __future__ import annotations

from . import cifar100, cub200, digits, imagefolder, tiny_imagenet  # noqa: F401  (registration)
from .base import DatasetSpec, DataSplits, ImageDataset
from .load import load_dataset
from .registry import dataset_names, get_dataset_spec, register_dataset

DATASET_NAMES: tuple[str, ...] = dataset_names()

__all__ = [
    "DATASET_NAMES",
    "DataSplits",
    "DatasetSpec",
    "ImageDataset",
    "dataset_names",
    "get_dataset_spec",
    "load_dataset",
    "register_dataset",
]
