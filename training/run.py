"""``train()``: the public entry point behind ``abrl train``, from config to a finished run dir."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from abrl_deploy import __version__
from abrl_deploy.card import ModelCard

from . import checkpoint as ckpt
from . import distributed
from .config import TrainConfig
from .tensorboard import TensorBoardLog
from .trainer import Trainer, TrainResult


def train(
    cfg: TrainConfig | None,
    out: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train ``cfg`` into run directory ``out``; with ``resume``, continue the run saved there.

    Launched by torchrun, every process calls this: they train together (training/distributed/), and
    rank 0 alone reads and writes ``out`` and hands what it read to the others, so ``out`` need
    not be visible from every machine.
    """
    out = Path(out)
    with distributed.process_group():
        distributed.on_main(lambda: ckpt.prepare_run_dir(out, force=force, resume=resume))
        resumed_at = None
        if resume:
            cfg = distributed.on_main(lambda: ckpt.load_run_config(out))
        trainer = Trainer(cfg, out, quiet=quiet)
        if resume:
            trainer.restore(distributed.on_main(lambda: ckpt.load_state(out)))
            resumed_at = trainer.epoch
        else:
            distributed.on_main(lambda: ckpt.save_config(trainer.cfg, out))
        if trainer.cfg.tensorboard and distributed.is_main():
            trainer.tensorboard = TensorBoardLog.open(
                trainer.cfg.tensorboard, out, force=force, resume=resume, epoch=trainer.epoch
            )
        trainer.run()
        card = _finish(trainer)
        return TrainResult(out, card, trainer.history, resumed_at, distributed.rank())


def _finish(trainer: Trainer) -> ModelCard:
    """Final head (refit for ABRL), final metrics, weights and card. Deterministic, so a run
    killed while finishing and resumed writes the same files."""
    splits = trainer.splits

    def evaluate_test() -> dict[str, float]:
        return trainer.evaluate_split(splits.test)

    head = trainer.method.finalize(trainer.eval_loader(splits.train_eval), evaluate_test)
    # finalize evaluated both heads on the test split; the saved one's figures are the run's
    saved = head[f"{head['source']}_head"]
    metrics: dict[str, Any] = {f"test_{k}": v for k, v in saved.items()}
    metrics.update({f"val_{k}": v for k, v in trainer.evaluate_split(splits.val).items()})
    metrics["epochs"] = trainer.epoch
    metrics["train_seconds"] = round(sum(r["seconds"] for r in trainer.history), 3)
    sha = distributed.on_main(lambda: ckpt.save_weights(trainer.model, trainer.out))
    cfg = trainer.cfg
    card = ModelCard(
        method=cfg.method,
        backbone=cfg.backbone,
        num_classes=splits.num_classes,
        class_names=tuple(splits.class_names),
        input_size=splits.image_size,
        mean=tuple(splits.mean),
        std=tuple(splits.std),
        feature_dim=trainer.model.feature_dim,
        dataset=splits.name,
        preprocessing=splits.preprocessing,
        data_splits=dict(splits.split_sizes),
        seed=cfg.seed,
        config=cfg.to_dict(),
        metrics=metrics,
        head=head,
        versions=library_versions(),
        training=training_record(trainer),
        checkpoint_sha256=sha,
    )
    distributed.on_main(lambda: card.save(trainer.out / ckpt.CARD))
    return card


def training_record(trainer: Trainer) -> dict[str, Any]:
    """What ran and why, where: the resolved precision, the device and CPU, the image cache."""
    from abrl_deploy import machine

    record: dict[str, Any] = trainer.precision.to_dict()
    record["device"] = str(trainer.device)
    if trainer.device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(trainer.device)
    record["cpu"], record["cpu_flags"] = machine.cpu_model(), machine.cpu_flags()
    record["data_cache"] = trainer.splits.cache_note
    return record


def library_versions() -> dict[str, str]:
    import torchvision

    return {
        "abrl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
