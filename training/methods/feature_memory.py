"""ABRL's inner problem over the training split: a memory of every training row's features.

The paper's inner loss is the cross-entropy over the training split, and φ*(θ) its argmin. A head
solved on one 64-row batch is the batch's optimum instead (on 100 classes a batch lacks most of
them); its implicit hypergradient had cosine 0.20 with the split's (issue 23). The memory keeps
the detached features of every training row, each overwritten when its batch is encoded (so no
entry is older than one epoch, as in XBM's cross-batch memory); the head persists across steps and
advances a few Newton-CG iterations per step on the memory; v is solved by CG from zero on the
memory's Hessian each step (its right-hand side comes from a new validation batch every step, so
the previous v is no better a start than zero: decision 6). Measured on frozen features, 30 CG
iterations from zero already give the exact feature hypergradient's direction (cosine 1.000).
The cross term of the hypergradient reaches θ through the current batch's rows as a batch mean:
the unbiased estimate of the split's mean (abrl.py, hypergrad.implicit_surrogate).

Rows enter the memory when first encoded: during the first epoch the problem is over the rows seen
so far. 9,000 × 512 fp32 features (tiny-imagenet-100, ResNet-18) take 18 MB.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import hypergrad as hg


class FeatureMemory:
    """Detached features and labels of the training rows, indexed by dataset row."""

    def __init__(self, rows: int, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.z = torch.zeros(rows, dim, dtype=dtype, device=device)
        self.y = torch.zeros(rows, dtype=torch.long, device=device)
        self.filled = torch.zeros(rows, dtype=torch.bool, device=device)

    def update(self, index: Tensor, z: Tensor, y: Tensor) -> float | None:
        """Overwrite the rows ``index`` with fresh features; returns the median staleness
        ``||z_new - z_old|| / ||z_new||`` of the rows that were already held (None if none)."""
        z = z.detach().to(self.z.dtype)
        old = self.filled[index]
        staleness = None
        if old.any():
            new, before = z[old], self.z[index[old]]
            rel = (new - before).norm(dim=1) / new.norm(dim=1).clamp_min(1e-12)
            staleness = rel.median().item()
        self.z[index], self.y[index], self.filled[index] = z, y, True
        return staleness

    def rows(self) -> tuple[Tensor, Tensor]:
        """The features and labels of every row held so far."""
        if bool(self.filled.all()):
            return self.z, self.y
        return self.z[self.filled], self.y[self.filled]

    @property
    def nbytes(self) -> int:
        return self.z.numel() * self.z.element_size()

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z, "y": self.y, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.z.device
        self.z, self.y = state["z"].to(device), state["y"].to(device)
        self.filled = state["filled"].to(device)


def advance_head(
    z: Tensor,
    y: Tensor,
    W: Tensor,
    b: Tensor,
    ridge: float,
    newton_steps: int,
    cg_iters: int,
    tol: float = 0.0,
) -> tuple[Tensor, Tensor, int]:
    """``newton_steps`` damped Newton-CG steps on the ridge-logistic loss over ``z`` from the warm
    start (each direction from at most ``cg_iters`` CG iterations, Armijo backtracking), in the
    features' dtype. Returns the head and the number of steps taken (0 when already stationary
    to rounding). Not a solve to stationarity: the head follows a slowly moving optimum."""
    from .newton import line_search

    taken = 0
    with torch.no_grad():
        z, W, b = z.detach(), W.detach().to(z.dtype), b.detach().to(z.dtype)
        loss = hg.inner_loss(z, y, W, b, ridge).item()
        for _ in range(newton_steps):
            gW, gb = hg.inner_grad(z, y, W, b, ridge)
            gnorm = math.sqrt(gW.pow(2).sum().item() + gb.pow(2).sum().item())
            if gnorm <= tol:  # stationary enough: the step budget is a cap, not a quota
                break
            probs = torch.softmax(hg.head_logits(z, W, b), dim=1)
            rtol = min(0.5, math.sqrt(gnorm))  # Eisenstat-Walker, as newton_head
            dW, db = hg.solve_cg(z, probs, (gW, gb), ridge, rtol=rtol, max_iter=cg_iters).v
            W, b, loss = line_search(z, y, W, b, -dW, -db, gW, gb, loss, ridge)
            taken += 1
    return W, b, taken
