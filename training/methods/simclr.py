"""SimCLR baseline: NT-Xent pre-training of the encoder, then fine-tuning (docs/method.md)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..distributed import gather_rows
from .base import Method, StepResult, cross_entropy_step
from .ntxent import nt_xent
from .registry import register_method


def simclr_augmentation(size: int, mean, std) -> T.Compose:
    """docs/method.md's views for small images: resized crop, flip, colour jitter, grey; no blur."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


class _TwoViews:
    """Maps one image to two independent augmentations, stacked [2, 3, S, S]."""

    def __init__(self, transform: T.Compose) -> None:
        self.transform = transform

    def __call__(self, img) -> torch.Tensor:
        return torch.stack([self.transform(img), self.transform(img)])


@register_method("simclr")
class SimclrMethod(Method):
    """Epochs < pretrain_epochs: NT-Xent on a 2-layer projection; the rest: CE fine-tuning.

    One optimizer and one cosine schedule span both phases; a parameter that gets no gradient in
    a phase (the head while pre-training, the projector while fine-tuning) is left untouched.
    Under torchrun the negatives come from the batch of all ranks, with BatchNorm over it too
    (the SimCLR paper's global BN: per-process statistics let the views of one image match
    through them).
    """

    sync_batchnorm = True

    def __init__(self, cfg, model, splits, device) -> None:
        super().__init__(cfg, model, splits, device)
        d = model.feature_dim
        self.projector = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 128)).to(device)
        self.epoch = 0

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + list(self.projector.parameters())

    def pretraining(self) -> bool:
        return self.epoch < self.cfg.simclr_pretrain_epochs

    def train_dataset(self, epoch: int) -> Dataset:
        self.epoch = epoch
        if not self.pretraining():
            return self.splits.train
        s = self.splits
        return s.train_views(_TwoViews(simclr_augmentation(s.image_size, s.mean, s.std)))

    def step(self, batch, val_batch) -> StepResult:
        x, y = batch
        if not self.pretraining():
            return cross_entropy_step(self, x, y)
        views = x.flatten(0, 1)  # [2B, 3, S, S], rows 2i and 2i+1 are one image
        with self.autocast():
            p = self.projector(self.model.forward_features(views)).float()
        p = gather_rows(p)  # every rank's pairs, in order: rows 2i and 2i+1 stay one image
        loss = nt_xent(p[0::2], p[1::2], self.cfg.temperature)
        loss.backward()
        return StepResult(loss.item(), None, {"nt_xent": loss.item()})

    def state_dict(self) -> dict[str, Any]:
        return {"projector": self.projector.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.projector.load_state_dict(state["projector"])
