"""Damped Newton on the ridge-logistic head: the inner solve that reaches stationarity.

The implicit hypergradient holds only where ``∇_φ L_in = 0`` (docs/method.md decision 3, amended).
K plain gradient steps leave the head 600-1,700 × μ away from it on real features; Newton from
the persistent head gets there in a handful of iterations because the head moves little between
outer steps. Directions come from a Woodbury solve of ``H d = -∇`` when the batch's logit space
(n·C) is small, else from truncated conjugate gradient on the closed-form Hessian-vector product.
A backtracking (Armijo) line search makes every step decrease the convex loss.

Runs in float64 whatever it is given (an fp32 gradient cannot be resolved to 1e-6), and returns
the head in the caller's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import hypergrad as hg

# Above this many logit entries (rows × classes) the Woodbury system is solved iteratively.
MAX_WOODBURY_SIZE = 2048


@dataclass(frozen=True)
class NewtonResult:
    """The solved head; ``residual`` is ``||∇_φ L_in||`` at it, in float64."""

    W: Tensor
    b: Tensor
    iterations: int
    residual: float


def _flat_norm(gW: Tensor, gb: Tensor) -> float:
    return math.sqrt(gW.pow(2).sum().item() + gb.pow(2).sum().item())


def woodbury_direction(z: Tensor, probs: Tensor, rW: Tensor, rb: Tensor, ridge: float):
    """Exact ``H⁻¹ r`` through the n·C system ``(μI + B(K ⊗ I)/n) w = B J r / n``.

    ``H = JᵀBJ/n + μI`` with ``J`` the Jacobian of the logits in ``φ = [W | b]`` and ``B`` the
    per-row softmax Hessians; ``JJᵀ = K ⊗ I`` with ``K = Z̃Z̃ᵀ``, ``Z̃ = [Z, 1]``. Then
    ``H⁻¹ r = (r − Jᵀ w) / μ``. Cost O((nC)³) instead of O((C(D+1))³).
    """
    n, C = probs.shape
    A = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]  # [n, C, C]
    K = z @ z.t() + 1.0  # Z̃Z̃ᵀ
    M = (K[:, None, :, None] * A[:, :, None, :]).reshape(n * C, n * C) / n
    M.diagonal().add_(ridge)
    Jr = hg.head_logits(z, rW, rb)  # [n, C]
    BJr = torch.einsum("icd,id->ic", A, Jr) / n
    w = torch.linalg.solve(M, BJr.reshape(-1)).reshape(n, C)
    return (rW - w.t() @ z) / ridge, (rb - w.sum(0)) / ridge


def cg_direction(z: Tensor, probs: Tensor, rW: Tensor, rb: Tensor, ridge: float, rtol: float):
    """``H⁻¹ r`` to relative residual ``rtol`` by CG (truncated Newton: a loose rtol is enough)."""
    sol = hg.solve_cg(z, probs, (rW, rb), ridge, rtol=rtol, max_iter=200)
    return sol.v


def newton_head(
    z: Tensor,
    y: Tensor,
    W: Tensor,
    b: Tensor,
    ridge: float,
    tol: float,
    max_iter: int,
    method: str = "auto",
) -> NewtonResult:
    """Minimise ``inner_loss`` in ``(W, b)`` from the warm start until ``||∇|| <= tol`` or
    ``max_iter`` iterations. ``method``: "woodbury", "cg", or "auto" (Woodbury while n·C is
    at most :data:`MAX_WOODBURY_SIZE`)."""
    hg.check_ridge(ridge)
    dtype = W.dtype
    with torch.no_grad():
        z, W, b = z.detach().double(), W.detach().double(), b.detach().double()
        if method == "auto":
            method = "woodbury" if z.shape[0] * W.shape[0] <= MAX_WOODBURY_SIZE else "cg"
        loss = hg.inner_loss(z, y, W, b, ridge).item()
        gW, gb = hg.inner_grad(z, y, W, b, ridge)
        gnorm, it = _flat_norm(gW, gb), 0
        while gnorm > tol and it < max_iter:
            probs = torch.softmax(hg.head_logits(z, W, b), dim=1)
            if method == "woodbury":
                dW, db = woodbury_direction(z, probs, gW, gb, ridge)
            else:  # Eisenstat-Walker forcing: loose far away, tight near the optimum
                dW, db = cg_direction(z, probs, gW, gb, ridge, min(0.5, math.sqrt(gnorm)))
            W, b, loss = line_search(z, y, W, b, -dW, -db, gW, gb, loss, ridge)
            gW, gb = hg.inner_grad(z, y, W, b, ridge)
            gnorm, it = _flat_norm(gW, gb), it + 1
        return NewtonResult(W.to(dtype), b.to(dtype), it, gnorm)


def line_search(z, y, W, b, dW, db, gW, gb, loss: float, ridge: float):
    """Largest ``t`` in 1, 1/2, 1/4, ... with sufficient decrease (Armijo, c = 1e-4)."""
    slope = (gW * dW).sum().item() + (gb * db).sum().item()
    t = 1.0
    for _ in range(40):
        Wt, bt = W + t * dW, b + t * db
        new = hg.inner_loss(z, y, Wt, bt, ridge).item()
        if new <= loss + 1e-4 * t * slope:
            return Wt, bt, new
        t *= 0.5
    return W, b, loss  # no decrease at any step: at the optimum to rounding
