"""Top-1 / top-5 accuracy and loss of a classifier on a loader."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import sum_floats


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum().item()


@torch.no_grad()
def evaluate(model, loader, device: torch.device, across_ranks: bool = False) -> dict[str, float]:
    """Accuracy in percent and mean CE over every row of ``loader`` (eval mode).

    With ``across_ranks`` (under torchrun), ``loader`` holds this rank's share of the rows and the
    counts of all ranks are added: every rank gets the figures of the whole split.
    """
    was_training = model.training
    model.eval()
    n = c1 = c5 = 0
    loss = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        c1 += topk_correct(logits, y, 1)
        c5 += topk_correct(logits, y, 5)
        n += len(y)
    model.train(was_training)
    if across_ranks:
        n, c1, c5, loss = sum_floats([n, c1, c5, loss])
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan")}
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss / n}
