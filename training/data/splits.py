"""Seeded, stratified subsets: the validation carve-out, the digits test split and ``limit``."""

from __future__ import annotations

import math

import numpy as np


def stratified_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Pick ``count`` row indices spread over the classes in proportion to their sizes.

    Each class is shuffled, and its k-th row gets the key (k + 0.5) / class_size; taking the
    smallest keys takes about the same fraction of every class. Unlike scikit-learn's splitters
    this never fails when a class is smaller than the number of classes asked for.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))  # random order, also the tie-break between classes
    keys = np.empty(len(labels), dtype=np.float64)
    for cls in np.unique(labels):
        rows = order[labels[order] == cls]
        keys[rows] = (np.arange(len(rows)) + 0.5) / len(rows)
    picked = order[np.argsort(keys[order], kind="stable")[:count]]
    return np.sort(picked)


def split_off(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (kept, split-off) with ``ceil(fraction * n)`` stratified rows split off.

    At least one row is kept and, when ``fraction > 0``, at least one is split off.
    """
    n = len(labels)
    count = math.ceil(fraction * n) if fraction > 0 else 0
    count = min(max(count, 1 if fraction > 0 else 0), max(n - 1, 0))
    off = stratified_pick(labels, count, seed)
    kept = np.setdiff1d(np.arange(n), off, assume_unique=True)
    return kept, off


def limit_rows(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """All row indices, or a stratified seeded subset of ``limit`` of them."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    return stratified_pick(labels, limit, seed)
