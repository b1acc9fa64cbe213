"""scikit-learn's embedded ``load_digits``: 1,797 real 8x8 greyscale handwritten digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .raw import ArraySource, DatasetSpec, RawDataset
from .registry import register_dataset
from .splits import split_off

# The digits have no official test split: a fixed stratified 20% with its own seed, so every run
# (whatever its seed) tests on the same 360 images.
_TEST_FRACTION = 0.2
_TEST_SEED = 0

# Measured once over all 1,797 images after the x255/16 scaling and the bilinear 8 -> 32 resize.
_MEAN = (0.3055, 0.3055, 0.3055)
_STD = (0.3235, 0.3235, 0.3235)


def read_digits(data_dir: Path | None = None) -> RawDataset:
    """Scale 0..16 to uint8 (x255/16) and repeat to RGB; resizing happens in the transforms."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    labels = bunch.target.astype(np.int64)
    train_rows, test_rows = split_off(labels, _TEST_FRACTION, _TEST_SEED)
    return RawDataset(
        train=ArraySource(images=rgb[train_rows], labels=labels[train_rows]),
        test=ArraySource(images=rgb[test_rows], labels=labels[test_rows]),
        class_names=tuple(str(d) for d in range(10)),
    )


DIGITS = register_dataset(
    DatasetSpec(
        name="digits",
        read=read_digits,
        layout="nothing (scikit-learn's load_digits is embedded)",
        source="scikit-learn load_digits: 8x8 greyscale 0..16, scaled x255/16 to uint8, as RGB",
        image_size=32,
        mean=_MEAN,
        std=_STD,
        pad_fraction=1 / 8,
        hflip=False,  # a flipped digit is another glyph (or none)
        needs_dir=False,
        test_split=f"fixed stratified {_TEST_FRACTION:g} of the 1,797 images, seed {_TEST_SEED}",
    )
)
