"""Datasets read from their official on-disk layouts (never downloaded), split and transformed.

Importing this package registers every dataset module below; that, the readers and the row
selection (``rows``) are torch-free. ``load_dataset`` and the torch datasets load torch when used.
"""

from __future__ import annotations

from . import cifar100, cub200, digits, imagefolder, tiny_imagenet  # noqa: F401  (registration)
from .raw import DatasetSpec
from .registry import dataset_names, get_dataset_spec, register_dataset

DATASET_NAMES: tuple[str, ...] = dataset_names()

_TORCH = {"DataSplits": ".base", "ImageDataset": ".base", "load_dataset": ".load"}

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


def __getattr__(name: str):
    if name in _TORCH:
        import importlib

        return getattr(importlib.import_module(_TORCH[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
