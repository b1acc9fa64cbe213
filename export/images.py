"""Real images of a run's dataset, preprocessed as the card says: for export validation (test
split), INT8 calibration (train split) and ``abrl optimize``'s choice (validation split)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import DatasetError


def run_images(
    card: ModelCard, split: str, n: int, data_dir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` images (float32 NCHW, normalised) and labels of ``split``: "test", "val" (the
    run's held-out validation rows) or "train" (without augmentation)."""
    cfg = card.config
    splits = _run_splits(
        card.dataset, data_dir or cfg.get("data_dir"), cfg.get("val_fraction", 0.1),
        card.seed or 0, card.input_size, cfg.get("limit"),
    )  # fmt: skip
    dataset = {"test": splits.test, "val": splits.val, "train": splits.train_eval}[split]
    if len(dataset) == 0:
        raise DatasetError(f"the run's {split} split is empty (val_fraction 0?); nothing to read")
    xs, ys = zip(*(dataset[i] for i in sample_order(len(dataset), n)), strict=True)
    return torch.stack(xs).numpy().astype(np.float32), np.asarray(ys)


def sample_order(rows: int, n: int) -> list[int]:
    """The first ``n`` rows of a fixed shuffle: every reader of a split samples the same images."""
    return torch.randperm(rows, generator=torch.Generator().manual_seed(0))[:n].tolist()


@functools.lru_cache(maxsize=1)
def _run_splits(dataset, data_dir, val_fraction, seed, image_size, limit):
    """The run's splits, loaded once per export (INT8 reads both the test and the train split)."""
    from abrl_deploy.training.data import load_dataset

    try:
        return load_dataset(
            dataset, data_dir, val_fraction=val_fraction, seed=seed,
            image_size=image_size, limit=limit,
        )  # fmt: skip
    except DatasetError as exc:
        hint = "the model's dataset is read to check it; pass --data-dir"
        raise DatasetError(f"{exc} ({hint})") from None
