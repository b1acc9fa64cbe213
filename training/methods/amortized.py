"""ABRL's inner problem over the training split, amortized: the stochastic bilevel family (SOBA;
the paper's own Algorithm 1 is of this kind). The head φ and the linear-system solution v persist
across outer steps and take one stochastic step each per outer step, on the step's fresh batches:

    φ ← φ − ρ_t ∇φ L_in(φ; train batch)
    v ← v − ρ_t (H_batch(φ) v − ∇φ CE(φ; validation batch))

so that φ tracks argmin L_in over the split and v tracks H⁻¹ ∇φ L_out, in expectation, without a
per-batch solve to stationarity. The encoder's step uses the current φ and v (implicit_surrogate).
Steps: ρ_t = α / (L_t √(1 + t / 100)), L_t the Böhning bound of the batch (an upper bound on its
Hessian's largest eigenvalue, so α ≤ 1 is a stable step) and α = ``amortized_lr`` (0.5): the decay
of benchopt's SOBA (0.1/√(t+1)) scaled by the curvature, since our features are not normalised.
φ is first fitted (Newton) on the whole split's features of the initial encoder.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import hypergrad as hg

DECAY_STEPS = 100


def step_size(alpha: float, z: Tensor, ridge: float, t: int) -> float:
    return alpha / (hg.bohning_bound(z, ridge) * math.sqrt(1.0 + t / DECAY_STEPS))


@torch.no_grad()
def soba_step(
    z_tr: Tensor, y_tr: Tensor, z_val: Tensor, y_val: Tensor,
    W: Tensor, b: Tensor, v: tuple[Tensor, Tensor], ridge: float, rho: float,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:  # fmt: skip
    """One simultaneous stochastic step of φ and v (both evaluated at the current φ)."""
    z_tr, z_val = z_tr.detach(), z_val.detach()
    gW, gb = hg.inner_grad(z_tr, y_tr, W, b, ridge)
    probs = torch.softmax(hg.head_logits(z_tr, W, b), dim=1)
    HvW, Hvb = hg.hessian_vp(z_tr, probs, v[0], v[1], ridge)
    oW, ob = hg.ce_grad(z_val, y_val, W, b)
    v = (v[0] - rho * (HvW - oW), v[1] - rho * (Hvb - ob))
    return W - rho * gW, b - rho * gb, v
