"""The Method interface: a method owns its step; the Trainer owns the loop, eval and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..distributed import gather_rows
from ..models import Classifier
from ..precision import resolve as resolve_precision


@dataclass
class StepResult:
    """What one step reports: the loss it minimised (ABRL: L_out, never its surrogate), the
    train-batch logits for train top-1 (None where the step has none), and floats to log."""

    loss: float
    logits: torch.Tensor | None = None
    logged: dict[str, float] = field(default_factory=dict)


class Method:
    """One training method. ``step`` computes the loss and calls backward; nothing else.

    Under torchrun, ``step`` gets this rank's part of the batch, and a loss that couples the rows
    of a batch (not a row-wise mean) is computed on rows gathered from all ranks with
    ``distributed.gather_rows``; the trainer then averages the gradients over ranks.
    """

    name: ClassVar[str]
    needs_val_batch: ClassVar[bool] = False
    # Under torchrun, normalise BatchNorm over the rows of all ranks: losses that couple the rows
    # of a batch then see the batch one process would see.
    sync_batchnorm: ClassVar[bool] = False
    own_head_kind: ClassVar[str] = "trained with the encoder by SGD"

    def __init__(self, cfg: TrainConfig, model: Classifier, splits: Any, device: torch.device):
        self.cfg = cfg
        self.model = model
        self.splits = splits
        self.device = device
        # What this machine runs the encoder in (auto: bf16 where the hardware has it).
        self.precision = resolve_precision(cfg.precision, device, cfg.channels_last)

    def parameters(self) -> list[nn.Parameter]:
        """What the outer optimizer updates."""
        return list(self.model.parameters())

    def train_dataset(self, epoch: int) -> Dataset:
        return self.splits.train

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], val_batch: Any | None) -> StepResult:
        """Forward, backward (the gradients are left for the Trainer's optimizer)."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Work once an epoch, after its last step and before the epoch's evaluation."""

    def sync_head(self) -> None:
        """Make ``model.head`` the head this method would deploy (ABRL keeps its own head)."""

    def finalize(self, train_eval_loader: Any, evaluate: Any) -> dict[str, Any]:
        """Evaluate both heads on the final encoder and keep the one the config asks for.

        Every method gets the same ridge-logistic refit (same ridge, same train features, same
        solver, from zero), so a comparison of methods on the refit head is like for like; the
        method's own head is recorded beside it. Returns what the card records under ``head``.
        """
        from .head_refit import refit_model_head

        self.sync_head()
        own = evaluate()
        own_state = {k: t.clone() for k, t in self.model.head.state_dict().items()}
        fit = refit_model_head(self.model, train_eval_loader, self.device, self.cfg)
        refit = evaluate()
        if not self.cfg.head_refit:
            self.model.head.load_state_dict(own_state)
        return {
            "source": "refit" if self.cfg.head_refit else "own",
            "own_head_kind": self.own_head_kind,
            "own_head": own,
            "refit_head": refit,
            "refit": fit,
        }

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def epoch_diagnostics(self) -> tuple[dict[str, Any], list[str]]:
        """Per-epoch summaries of what each step recorded, and warnings; resets the records."""
        return {}, []

    def autocast(self) -> Any:
        """bf16 autocast of the encoder when the run's precision resolved to bf16 (CPU or CUDA)."""
        enabled = self.precision.autocast
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)


def cross_entropy_step(method: Method, x: torch.Tensor, y: torch.Tensor, lambda_: float = 0.0):
    """CE on model(x), plus λ·penalty on the features when lambda_ > 0 (the `joint` method).

    The penalty couples the rows of a batch: it is taken on the features of all ranks.
    """
    from .penalty import cov_penalty

    with method.autocast():
        z = method.model.forward_features(x)
        logits = method.model.forward_head(z)
    ce = F.cross_entropy(logits.float(), y)
    logged = {"ce": ce.item()}
    loss = ce
    if lambda_ > 0:
        pen = cov_penalty(gather_rows(z), normalize=method.cfg.penalty_norm)
        loss = ce + lambda_ * pen
        logged["penalty"] = pen.item()
    loss.backward()
    return StepResult(loss.item(), logits.detach(), logged)
