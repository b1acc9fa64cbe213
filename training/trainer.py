"""The training loop: optimizer, cosine schedule, evaluation, progress, checkpoints and resume.

Resume is exact on CPU: every epoch re-seeds all RNGs from (seed, epoch), so an epoch replayed
after a kill draws the same batches and augmentations as the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import load_dataset
from .evaluate import evaluate, topk_correct
from .methods import get_method
from .models import build_classifier, resolve_stem
from .progress import TrainProgress


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    card: ModelCard
    history: list[dict[str, Any]]
    resumed_at_epoch: int | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    return torch.device(name)


def _seed_everything(seed: int, epoch: int) -> torch.Generator:
    s = seed * 1_000_003 + epoch
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    return torch.Generator().manual_seed(s)


def _loader(dataset, batch_size: int, cfg: TrainConfig, generator=None) -> DataLoader:
    """Shuffled, full batches only (BatchNorm and the head system need > 1 row)."""
    return DataLoader(
        dataset,
        batch_size=max(2, min(batch_size, len(dataset))),
        shuffle=generator is not None,
        drop_last=generator is not None,
        generator=generator,
        num_workers=cfg.workers,
    )


def _cycle(loader: DataLoader) -> Iterator:
    if len(loader) == 0:
        raise ConfigError("the validation split is empty; raise --val-fraction or use more data")
    while True:
        yield from loader


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, quiet: bool = False) -> None:
        self.device = resolve_device(cfg.device)
        self.splits = load_dataset(
            cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
            image_size=cfg.image_size, limit=cfg.limit,
        )  # fmt: skip
        size = self.splits.image_size
        self.cfg = dataclasses.replace(cfg, image_size=size, stem=resolve_stem(cfg.stem, size))
        _seed_everything(cfg.seed, -1)
        model = build_classifier(
            cfg.backbone, self.splits.num_classes, stem=self.cfg.stem, pretrained=cfg.pretrained
        )
        self.model = model.to(self.device)
        self.method = get_method(cfg.method)(self.cfg, self.model, self.splits, self.device)
        if self.method.needs_val_batch and len(self.splits.val) < 2:
            raise ConfigError(
                f"{cfg.method} needs at least 2 validation images for its outer loss, the split has"
                f" {len(self.splits.val)}; raise --val-fraction (now {cfg.val_fraction}) or --limit"
            )
        self.optimizer = torch.optim.SGD(
            self.method.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        steps = len(self.splits.train) // min(cfg.batch_size, len(self.splits.train))
        self.steps_per_epoch = max(1, steps)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs * self.steps_per_epoch
        )
        self.out, self.quiet = out, quiet
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    def eval_loader(self, dataset) -> DataLoader:
        return _loader(dataset, 256, self.cfg)

    def evaluate_split(self, dataset) -> dict[str, float]:
        return evaluate(self.model, self.eval_loader(dataset), self.device)

    def run(self) -> None:
        with TrainProgress(self.cfg.epochs, self.steps_per_epoch, self.quiet) as progress:
            while self.epoch < self.cfg.epochs:
                row = self._train_epoch(progress)
                self.history.append(row)
                self.epoch += 1
                self._checkpoint()
                progress.epoch_done(row)

    def _train_epoch(self, progress: TrainProgress) -> dict[str, Any]:
        cfg, method = self.cfg, self.method
        gen = _seed_everything(cfg.seed, self.epoch)
        progress.start_epoch(self.epoch)
        train = _loader(method.train_dataset(self.epoch), cfg.batch_size, cfg, gen)
        val_iter = None
        if method.needs_val_batch:
            val_iter = _cycle(_loader(self.splits.val, cfg.outer_batch_size, cfg, gen))
        self.model.train()
        sums: dict[str, float] = {}
        n = c1 = c5 = steps = 0
        t0 = time.perf_counter()
        for x, y in train:
            x, y = x.to(self.device), y.to(self.device)
            val = None
            if val_iter is not None:
                xv, yv = next(val_iter)
                val = (xv.to(self.device), yv.to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            out = method.step((x, y), val)
            self.optimizer.step()
            self.scheduler.step()
            logits = out.pop("logits", None)
            if logits is not None:
                c1 += topk_correct(logits, y, 1)
                c5 += topk_correct(logits, y, 5)
                n += len(y)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            steps += 1
            progress.step(self.epoch, out.get("loss", float("nan")))
        return self._epoch_row(sums, steps, n, c1, c5, time.perf_counter() - t0)

    def _epoch_row(self, sums, steps, n, c1, c5, seconds) -> dict[str, Any]:
        self.method.sync_head()
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "steps": steps,
            "seconds": round(seconds, 3),
        }
        row["lr"] = self.scheduler.get_last_lr()[0]
        row.update({k: v / max(steps, 1) for k, v in sums.items()})
        if n:
            row["train_top1"], row["train_top5"] = 100.0 * c1 / n, 100.0 * c5 / n
        for split in ("val", "test"):
            for k, v in self.evaluate_split(getattr(self.splits, split)).items():
                row[f"{split}_{k}"] = v
        return row

    def _checkpoint(self) -> None:
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "history": self.history,
        }
        ckpt.save_state(self.out, state)
        ckpt.write_metrics(self.out, self.history)

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
