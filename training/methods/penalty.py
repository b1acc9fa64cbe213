"""The decorrelation penalty ``pen(Z) = ||Cov(Z) - I||²_F`` (docs/method.md decision 7)."""

from __future__ import annotations

import torch
from torch import Tensor


def cov_penalty(z: Tensor, normalize: bool = False) -> Tensor:
    """``||Cov(Z) - I||²_F`` of a batch ``z [B, D]``, in Gram form, differentiable in ``z``.

    With ``Z_c = Z - mean(Z)`` and ``m = B - 1``:
    ``pen = ||Z_c Z_cᵀ||²_F / m² - 2 ||Z_c||²_F / m + D``, exact and never forming the D×D
    covariance when ``B < D``. Half-precision input is computed in fp32 outside autocast; fp64
    stays fp64.

    Two facts about this objective, by construction rather than by accident:

    * For ``B <= D`` the covariance has rank at most ``B - 1``, so ``pen >= D - B + 1``: the
      penalty can never reach zero on a mini-batch narrower than the features.
    * Its mini-batch expectation is minimised at a feature variance well below 1: it shrinks and
      decorrelates the features rather than whitening them.

    Args:
        z: features, ``B >= 2`` rows.
        normalize: divide by ``D`` so that the weight λ does not depend on the backbone width.
    """
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(
            f"cov_penalty needs a [B, D] batch with B >= 2, got shape {tuple(z.shape)}"
        )
    with torch.autocast(device_type=z.device.type, enabled=False):
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        B, D = z.shape
        m = B - 1
        zc = z - z.mean(0, keepdim=True)
        # ||Z_c Z_cᵀ||_F = ||Z_cᵀ Z_c||_F: square the smaller Gram matrix.
        gram = zc @ zc.t() if B <= D else zc.t() @ zc
        pen = gram.pow(2).sum() / m**2 - 2.0 * zc.pow(2).sum() / m + D
        return pen / D if normalize else pen
