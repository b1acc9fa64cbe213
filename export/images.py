"""Real images of a run's dataset, preprocessed as the card says, torch-free: for export
validation (test split), INT8 calibration (train split, no augmentation), ``abrl optimize``'s
choice (the test split's select half, reported on its holdout half) and ``abrl bench`` (test).

Pixels go through the card's ``Preprocessor`` (what a deployment runs; equal to torchvision's eval
transform to 1e-5), rows through ``training.data.rows`` (what training used).
"""

from __future__ import annotations

import functools

import numpy as np

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import DatasetError
from abrl_deploy.preprocess import Preprocessor
from abrl_deploy.training.data.rows import RunRows, run_rows, sample_order

HALVES = ("select", "holdout")  # of the test split: optimize chooses on one, reports the other
SELECT_SEED = 20261204  # fixed: the same halves for every run of a dataset


def run_images(
    card: ModelCard, split: str, n: int, data_dir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` images (float32 NCHW, normalised) and labels of ``split``: "test", "val" (the
    run's held-out validation rows), "train" (without augmentation), or "select" / "holdout": the
    two halves of the test split (a fixed seeded shuffle), on which ``abrl optimize`` chooses and
    reports. No method of a run trains on test images; ABRL's outer loss trains on "val". A card
    without a training config (a third-party model) reads the dataset's whole test split."""
    cfg = card.config
    rows = _rows(card.dataset, data_dir or cfg.get("data_dir"), cfg.get("val_fraction", 0.1),
                 card.seed or 0, cfg.get("limit"))  # fmt: skip
    source, indices = rows.split("test" if split in HALVES else split)
    if split in HALVES:
        shuffled = indices[np.random.default_rng(SELECT_SEED).permutation(len(indices))]
        half = len(shuffled) // 2
        indices = np.sort(shuffled[:half] if split == "select" else shuffled[half:])
    if len(indices) == 0:
        raise DatasetError(f"the run's {split} split is empty (val_fraction 0?); nothing to read")
    picked = indices[sample_order(len(indices), n)]
    pre = Preprocessor(card)
    images = np.stack([pre.pil(source.image(int(i))) for i in picked]).astype(np.float32)
    return images, np.asarray(source.labels)[picked]


@functools.lru_cache(maxsize=2)
def _rows(dataset, data_dir, val_fraction, seed, limit) -> RunRows:
    """Read once per process (INT8 export reads the test and the train split)."""
    try:
        return run_rows(dataset, data_dir, val_fraction=val_fraction, seed=seed, limit=limit)
    except DatasetError as exc:
        hint = "the model's dataset is read to check it; pass --data-dir"
        raise DatasetError(f"{exc} ({hint})") from None
