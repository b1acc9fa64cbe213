"""Baselines: plain fine-tuning (CE) and single-level joint training (CE + λ·penalty)."""

from __future__ import annotations

from typing import Any

from .base import Method, cross_entropy_step
from .registry import register_method


@register_method("finetune")
class FinetuneMethod(Method):
    """Cross-entropy on encoder and head together."""

    def step(self, batch, val_batch) -> dict[str, Any]:
        x, y = batch
        return cross_entropy_step(self, x, y)


@register_method("joint")
class JointMethod(Method):
    """The single-level ablation: minimise CE_train + λ·pen over θ and φ together."""

    sync_batchnorm = True  # the penalty is taken on the batch of all ranks

    def step(self, batch, val_batch) -> dict[str, Any]:
        x, y = batch
        return cross_entropy_step(self, x, y, lambda_=self.cfg.lambda_)
