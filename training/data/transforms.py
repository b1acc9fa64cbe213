"""Eval and train transforms, and the JSON description of each (saved with the model)."""

from __future__ import annotations

from typing import Any

from torchvision import transforms as T

from .raw import DatasetSpec

_BILINEAR = T.InterpolationMode.BILINEAR


def resize_size(spec: DatasetSpec, size: int) -> int:
    """Shorter-side resize before the crop: the size itself, or 256/224 of it for large images."""
    return round(spec.resize_ratio * size)


def eval_transform(spec: DatasetSpec, size: int) -> T.Compose:
    """Resize the shorter side, centre-crop, scale to [0, 1], normalise: what deployment repeats."""
    return T.Compose(
        [
            T.Resize(resize_size(spec, size), interpolation=_BILINEAR),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )


def _padding(spec: DatasetSpec, size: int) -> int:
    return round(spec.pad_fraction * size)


def train_transform(spec: DatasetSpec, size: int) -> T.Compose:
    """Resize, random crop (padded for the small fixed-size sets), optional flip, normalise."""
    steps: list[Any] = [
        T.Resize(resize_size(spec, size), interpolation=_BILINEAR),
        T.RandomCrop(size, padding=_padding(spec, size) or None),
    ]
    if spec.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    return T.Compose(steps)


def describe_train_augmentation(spec: DatasetSpec, size: int) -> list[str]:
    """The random steps of ``train_transform`` as readable strings."""
    pad = _padding(spec, size)
    resize = resize_size(spec, size)
    # A resize to the crop size is listed in "eval" only; a larger one is part of the augmentation.
    steps = [f"Resize({resize})"] if resize != size else []
    steps.append(f"RandomCrop({size}, padding={pad})" if pad else f"RandomCrop({size})")
    if spec.hflip:
        steps.append("RandomHorizontalFlip()")
    return steps


def describe_eval(spec: DatasetSpec, size: int) -> dict[str, Any]:
    """The eval transform as the JSON-able dict that deployment preprocessing reproduces."""
    return {
        "resize": resize_size(spec, size),
        "crop": size,
        "interpolation": "bilinear",
        "scale": "1/255",
        "mean": list(spec.mean),
        "std": list(spec.std),
        "layout": "NCHW",
    }
