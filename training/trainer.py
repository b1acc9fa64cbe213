"""The training loop: optimizer, cosine schedule, evaluation, progress, checkpoints and resume.

Resume is exact on CPU: every epoch re-seeds all RNGs from (seed, epoch), so an epoch replayed
after a kill draws the same batches and augmentations as the uninterrupted run.

Under torchrun every rank runs this loop on its part of each global batch (training/distributed/
says how that equals one process); rank 0 alone shows progress and writes the run directory. The
checkpoint holds nothing that depends on the number of processes, so a run resumes on any number.
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
from torch.utils.data import DataLoader, Subset

from abrl_deploy.artifacts import STATE
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, RunDirError, first_line

from . import checkpoint as ckpt
from . import distributed
from .batches import EpochBatchSampler, batch_sizes
from .config import TrainConfig
from .data import load_dataset
from .evaluate import evaluate, topk_correct
from .methods import StepResult, get_method
from .models import build_classifier, resolve_stem
from .progress import TrainProgress


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    card: ModelCard
    history: list[dict[str, Any]]
    resumed_at_epoch: int | None
    rank: int = 0  # under torchrun, the rank of the process that returns this


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


def _global_batch(batch_size: int, n: int) -> int:
    """The batch that fits ``n`` rows, cut to a multiple of the number of processes."""
    world = distributed.world_size()
    size = max(2, min(batch_size, n))
    if size < world:
        raise ConfigError(
            f"a split of {n} rows cannot give each of the {world} processes a row; "
            "use more data (--limit) or fewer processes"
        )
    return size - size % world


def _loader(dataset, batch_size: int, cfg: TrainConfig, generator=None) -> DataLoader:
    """With ``generator``: shuffled, every row once (batches.py), and under torchrun this rank's
    part of each batch. Without: every row once, in order."""
    if generator is None:
        size = max(2, min(batch_size, len(dataset)))
        return DataLoader(dataset, batch_size=size, num_workers=cfg.workers)
    _global_batch(batch_size, len(dataset))  # a clear error when the ranks cannot share a batch
    sampler = EpochBatchSampler(
        len(dataset), batch_size, generator, distributed.rank(), distributed.world_size()
    )
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers)


def _check_batches(cfg: TrainConfig, needs_val_batch: bool) -> None:
    """The batch sizes are global: under torchrun each must split evenly over the processes."""
    world = distributed.world_size()
    problems = []
    if cfg.batch_size % world:
        problems.append(f"--batch-size {cfg.batch_size}")
    if needs_val_batch and cfg.outer_batch_size % world:
        problems.append(
            f"the validation batch {cfg.outer_batch_size} (val_batch_size in --config; "
            "default batch_size // 4)"
        )
    if problems:
        raise ConfigError(
            f"{' and '.join(problems)} must split evenly over the {world} processes: batch sizes"
            f" are global, each process takes 1/{world} of every batch; use multiples of {world}"
        )


def _cycle(loader: DataLoader) -> Iterator:
    if len(loader) == 0:
        raise ConfigError("the validation split is empty; raise --val-fraction or use more data")
    while True:
        yield from loader


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, quiet: bool = False) -> None:
        self.device = distributed.local_device(resolve_device(cfg.device))
        self.splits = load_dataset(
            cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
            image_size=cfg.image_size, limit=cfg.limit, augment=cfg.augment, cache=cfg.data_cache,
        )  # fmt: skip
        size = self.splits.image_size
        self.cfg = dataclasses.replace(cfg, image_size=size, stem=resolve_stem(cfg.stem, size))
        _seed_everything(cfg.seed, -1)
        model = build_classifier(
            cfg.backbone, self.splits.num_classes, stem=self.cfg.stem, pretrained=cfg.pretrained
        )
        method_cls = get_method(cfg.method)
        _check_batches(cfg, method_cls.needs_val_batch)
        if method_cls.sync_batchnorm:
            model = distributed.convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device)
        self.method = method_cls(self.cfg, self.model, self.splits, self.device)
        self.precision = self.method.precision
        if self.precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.method.needs_val_batch and len(self.splits.val) < 2:
            raise ConfigError(
                f"{cfg.method} needs at least 2 validation images for its outer loss, the split has"
                f" {len(self.splits.val)}; raise --val-fraction (now {cfg.val_fraction}) or --limit"
            )
        self.params = self.method.parameters()
        self.optimizer = torch.optim.SGD(
            self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        n_train = len(self.splits.train)
        self.steps_per_epoch = len(batch_sizes(n_train, cfg.batch_size, distributed.world_size()))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs * self.steps_per_epoch
        )
        self.out, self.quiet = out, quiet or not distributed.is_main()
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.tensorboard = None  # a TensorBoardLog when --tensorboard is given (rank 0)

    def eval_loader(self, dataset, shard: bool = False) -> DataLoader:
        """Every row in order; with ``shard``, this rank's share (every world-th row)."""
        if shard and distributed.is_distributed():
            rows = range(distributed.rank(), len(dataset), distributed.world_size())
            dataset = Subset(dataset, rows)
        return _loader(dataset, 256, self.cfg)

    def evaluate_split(self, dataset) -> dict[str, float]:
        """Each rank evaluates its share of the rows; the counts of all ranks are added."""
        loader = self.eval_loader(dataset, shard=True)
        return evaluate(self.model, loader, self.device, across_ranks=True)

    def _sync_replicas(self) -> None:
        """Give every rank rank 0's weights, buffers and method state (the head, v, projector).

        Replicas stay equal by construction (same averaged gradients, same gathered rows); this
        re-syncs the BatchNorm running statistics that each rank updates on its own rows (as DDP
        does with its default broadcast_buffers) before evaluating and saving.
        """
        distributed.broadcast_from_main(self.model.state_dict().values())
        distributed.broadcast_from_main(_tensors(self.method.state_dict()))

    def run(self) -> None:
        self._sync_replicas()
        warn = distributed.is_main()  # one process speaks, even with --quiet
        with TrainProgress(self.cfg.epochs, self.steps_per_epoch, self.quiet, warn) as progress:
            p = self.precision
            layout = "channels_last" if p.channels_last else "contiguous"
            progress.note(
                f"{self.cfg.method} on {self.device}: {p.dtype} ({p.reason}), {layout} "
                f"({p.channels_last_reason}); image cache: {self.splits.cache_note}"
            )
            while self.epoch < self.cfg.epochs:
                row = self._train_epoch(progress)
                self.history.append(row)
                self.epoch += 1
                self._checkpoint()
                if self.tensorboard is not None:
                    self.tensorboard.write(row)
                progress.epoch_done(row)
        if self.tensorboard is not None:
            self.tensorboard.close()

    def epoch_batches(self) -> Iterator[tuple[tuple, tuple | None]]:
        """This epoch's (train batch, validation batch or None), seeded by (seed, epoch)."""
        cfg, method = self.cfg, self.method
        gen = _seed_everything(cfg.seed, self.epoch)
        train = _loader(method.train_dataset(self.epoch), cfg.batch_size, cfg, gen)
        val_iter = None
        if method.needs_val_batch:
            val_iter = _cycle(_loader(self.splits.val, cfg.outer_batch_size, cfg, gen))
        for batch in train:
            yield batch, (next(val_iter) if val_iter is not None else None)

    def train_step(self, batch: tuple, val: tuple | None) -> StepResult:
        """One outer step on host batches: to the device, the method's step, the optimizer."""
        x, y = self._to_device(batch[0]), batch[1].to(self.device)
        if val is not None:
            val = (self._to_device(val[0]), val[1].to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        out = self.method.step((x, y, *batch[2:]), val)  # extras: ABRL memory's row positions
        distributed.average_gradients(self.params)
        out.logged["grad_norm"] = self._clip_gradients()
        self.optimizer.step()
        self.scheduler.step()
        return out

    def _train_epoch(self, progress: TrainProgress) -> dict[str, Any]:
        progress.start_epoch(self.epoch)
        self.model.train()
        sums: dict[str, float] = {}
        n = c1 = c5 = steps = images = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        for batch, val in self.epoch_batches():
            out = self.train_step(batch, val)
            y = batch[1]
            if out.logits is not None:
                y = y.to(out.logits.device)
                c1 += topk_correct(out.logits, y, 1)
                c5 += topk_correct(out.logits, y, 5)
                n += len(y)
            for k, v in {"loss": out.loss, **out.logged}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            steps += 1
            images += len(y)
            progress.step(self.epoch, out.loss)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        return self._epoch_row(sums, steps, n, c1, c5, seconds, images * distributed.world_size())

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision.channels_last and x.dim() == 4:  # SimCLR's views arrive as 5-D
            return x.to(self.device, memory_format=torch.channels_last)
        return x.to(self.device)

    def _clip_gradients(self) -> float:
        """The global gradient norm before clipping (logged for every method); clip if asked."""
        if self.cfg.grad_clip is None:  # measure only: clip_grad_norm_ would rescale by 1.0
            grads = [p.grad for p in self.params if p.grad is not None]
            return float(torch.nn.utils.get_total_norm(grads))
        return float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip))

    def _epoch_row(self, sums, steps, n, c1, c5, seconds, n_images) -> dict[str, Any]:
        self._sync_replicas()
        self.method.end_epoch()
        self.method.sync_head()
        world = distributed.world_size()
        if world > 1:  # counts add up over ranks; per-step values are averaged over ranks
            keys = sorted(sums)
            totals = distributed.sum_floats([n, c1, c5, *(sums[k] for k in keys)])
            n, c1, c5 = totals[:3]
            sums = {k: v / world for k, v in zip(keys, totals[3:], strict=True)}
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "steps": steps,
            "seconds": round(seconds, 3),
            "images_per_second": round(n_images / seconds, 2) if seconds > 0 else None,
            "processes": world,
        }
        if self.device.type == "cuda":
            row["cuda_peak_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        row["lr"] = self.scheduler.get_last_lr()[0]
        row.update({k: v / max(steps, 1) for k, v in sums.items()})
        if n:
            row["train_top1"], row["train_top5"] = 100.0 * c1 / n, 100.0 * c5 / n
        for split in ("val", "test"):
            for k, v in self.evaluate_split(getattr(self.splits, split)).items():
                row[f"{split}_{k}"] = v
        diagnostics, warnings = self.method.epoch_diagnostics()
        row.update(diagnostics)
        if warnings:
            row["warnings"] = warnings
        return row

    def _checkpoint(self) -> None:
        distributed.on_main(self._write_checkpoint)

    def _write_checkpoint(self) -> None:
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
        """Continue from a state.pt; a damaged or foreign one is one line, never a traceback."""
        epoch = state.get("epoch") if isinstance(state, dict) else None
        if (
            not isinstance(epoch, int)
            or isinstance(epoch, bool)
            or not 0 <= epoch <= self.cfg.epochs
        ):
            raise RunDirError(
                f"{STATE} is not a checkpoint of this run: its epoch is {epoch!r}, expected an "
                f"integer from 0 to {self.cfg.epochs}; start over with --force"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.method.load_state_dict(state["method"])
            self.history = list(state["history"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise RunDirError(
                f"{STATE} does not fit this run ({type(exc).__name__}: {first_line(exc, 160)}); "
                "start over with --force"
            ) from None
        self.epoch = epoch


def _tensors(state: Any) -> list[torch.Tensor]:
    """The tensors in a (nested) state dict, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state) for t in _tensors(state[k])]
    return []
