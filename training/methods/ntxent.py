"""NT-Xent, the SimCLR contrastive loss (docs/method.md "SimCLR baseline")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent of two views ``z1, z2 [N, D]``: the mean over all 2N rows (the paper's mean).

    Rows of ``cat[z1; z2]`` are L2-normalised; row ``i``'s positive is its other view and its
    negatives are the other ``2N - 2`` rows (itself is masked out). Some references return twice
    this value (the sum of the two directional means).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"nt_xent needs two [N, D] views of one shape, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.t() / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    return F.cross_entropy(logits, targets)
