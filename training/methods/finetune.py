"""Baselines: plain fine-tuning (CE) and single-level joint training (CE + λ·penalty)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, Subset

from .base import Method, StepResult, cross_entropy_step
from .registry import register_method


@register_method("finetune")
class FinetuneMethod(Method):
    """Cross-entropy on encoder and head together."""

    def train_dataset(self, epoch: int) -> Dataset:
        """With ``label_rows`` N: the equal-labels baseline of issue 23. ABRL's encoder gets label
        signal only through the validation split (1,000 rows on tiny-imagenet-100); this
        fine-tune's encoder gets the labels of N train rows (a seeded pick), cycled to the split's
        length so its steps, epochs and schedule are unchanged. The refit head still fits on every
        train row, as ABRL's head does."""
        train = self.splits.train
        if self.cfg.label_rows is None or self.cfg.label_rows >= len(train):
            return train
        pick = np.random.default_rng(self.cfg.seed).permutation(len(train))[: self.cfg.label_rows]
        return Subset(train, np.resize(pick, len(train)).tolist())  # the N rows, cycled

    def step(self, batch, val_batch) -> StepResult:
        x, y = batch
        return cross_entropy_step(self, x, y)


@register_method("joint")
class JointMethod(Method):
    """The single-level ablation: minimise CE_train + λ·pen over θ and φ together."""

    sync_batchnorm = True  # the penalty is taken on the batch of all ranks

    def step(self, batch, val_batch) -> StepResult:
        x, y = batch
        return cross_entropy_step(self, x, y, lambda_=self.cfg.lambda_)
