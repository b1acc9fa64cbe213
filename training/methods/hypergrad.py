"""Closed-form maths of the linear head and the implicit hypergradient (docs/method.md 3, 5, 6).

Pure tensor functions: no modules, no configuration. The head is ``(W [C, D], b [C])`` on features
``z [n, D]``. Everything runs in the dtype it is given; callers pass fp32 (or fp64 in tests), never
half precision (decision 9). Pairs ``(W-part, b-part)`` stand for one vector in parameter space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from abrl_deploy.errors import ConfigError

Pair = tuple[Tensor, Tensor]

# Above this many head parameters the dense Hessian (size², fp32/fp64) is too large to build.
MAX_EXACT_SIZE = 8192


@dataclass(frozen=True)
class SolveResult:
    """Solution of ``H v = g``; ``residual`` is ``||H v - g|| / ||g||`` recomputed at the end."""

    v: tuple[Tensor, Tensor]
    iterations: int
    residual: float


def head_logits(z: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return torch.addmm(b, z, W.t())


def _ce_residual(z: Tensor, y: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """``(softmax - onehot) / n``: the gradient of mean CE with respect to the logits."""
    probs = torch.softmax(head_logits(z, W, b), dim=1)
    onehot = F.one_hot(y, num_classes=W.shape[0]).to(probs.dtype)
    return (probs - onehot) / z.shape[0]


def inner_loss(z: Tensor, y: Tensor, W: Tensor, b: Tensor, ridge: float) -> Tensor:
    """Mean cross-entropy plus ``ridge / 2 * (||W||² + ||b||²)``."""
    ce = F.cross_entropy(head_logits(z, W, b), y)
    return ce + 0.5 * ridge * (W.pow(2).sum() + b.pow(2).sum())


def ce_grad(z: Tensor, y: Tensor, W: Tensor, b: Tensor) -> Pair:
    """Gradient of mean CE (no ridge) in ``(W, b)``; the validation gradient ``g``."""
    G = _ce_residual(z, y, W, b)
    return G.t() @ z, G.sum(0)


def inner_grad(z: Tensor, y: Tensor, W: Tensor, b: Tensor, ridge: float) -> Pair:
    """Gradient of :func:`inner_loss` in ``(W, b)``. Differentiable in ``z``, ``W`` and ``b``."""
    gW, gb = ce_grad(z, y, W, b)
    return gW + ridge * W, gb + ridge * b


def inner_residual(z: Tensor, y: Tensor, W: Tensor, b: Tensor, ridge: float) -> float:
    """``||∇_φ inner_loss||`` computed in float64 (fp32 rounding alone is ~1e-6, the order of
    the stationarity tolerance)."""
    with torch.no_grad():
        gW, gb = inner_grad(z.double(), y, W.double(), b.double(), ridge)
        return math.sqrt(gW.pow(2).sum().item() + gb.pow(2).sum().item())


def hessian_vp(z: Tensor, probs: Tensor, VW: Tensor, vb: Tensor, ridge: float) -> Pair:
    """Hessian of :func:`inner_loss` times ``(VW, vb)``; ``probs`` is the softmax where H is taken.

    Per row the logit Hessian is ``diag(p) - p pᵀ``, applied to the logit change ``U = Z VWᵀ + vb``.
    """
    U = head_logits(z, VW, vb)
    PU = probs * U
    S = PU - probs * PU.sum(1, keepdim=True)
    n = z.shape[0]
    return S.t() @ z / n + ridge * VW, S.sum(0) / n + ridge * vb


def bohning_bound(z: Tensor, ridge: float) -> float:
    """Upper bound ``λ_max(Z̃ᵀZ̃) / (2n) + ridge`` on ``λ_max(H)``, with ``Z̃ = [Z, 1]``.

    Holds at every head, since ``diag(p) - p pᵀ ⪯ I / 2``. A step ``lr < 2 / L`` is then stable.
    """
    with torch.no_grad():
        n = z.shape[0]
        zt = torch.cat([z.detach(), z.new_ones(n, 1)], dim=1)
        # Z̃ᵀZ̃ and Z̃Z̃ᵀ share their non-zero eigenvalues: factor the smaller one.
        gram = zt.t() @ zt if zt.shape[1] <= n else zt @ zt.t()
        top_eigenvalue = torch.linalg.eigvalsh(gram)[-1].item()
    return top_eigenvalue / (2 * n) + ridge


def validate_inner_lr(lr: float, L: float) -> None:
    """Reject an inner step size outside ``(0, 2 / L)``, where plain GD on the head diverges."""
    if not (lr > 0 and lr < 2.0 / L):
        raise ConfigError(
            f"inner learning rate {lr:g} is outside (0, 2/L) = (0, {2.0 / L:g}), where L = {L:g} "
            "is the Böhning bound on the head Hessian; the head would diverge. "
            "Use --inner-lr auto (1/L, recomputed every step) or a smaller value."
        )


def inner_steps(
    z: Tensor, y: Tensor, W: Tensor, b: Tensor, ridge: float, lr: float, inner_steps: int
) -> Pair:
    """``inner_steps`` (K) plain GD steps on the head with frozen features; returns new detached
    tensors."""
    with torch.no_grad():
        z, W, b = z.detach(), W.detach().clone(), b.detach().clone()
        for _ in range(inner_steps):
            gW, gb = inner_grad(z, y, W, b, ridge)
            W = W - lr * gW
            b = b - lr * gb
    return W, b


def _dot(a: Pair, c: Pair) -> Tensor:
    return (a[0] * c[0]).sum() + (a[1] * c[1]).sum()


def _norm(a: Pair) -> float:
    return math.sqrt(_dot(a, a).item())


def check_ridge(ridge: float) -> None:
    if not ridge > 0:
        raise ConfigError(
            f"head ridge {ridge:g} must be > 0: without it the head Hessian is singular on "
            "separable features and the linear solve diverges (docs/method.md decision 1)."
        )


def _relative_residual(z: Tensor, probs: Tensor, g: Pair, v: Pair, ridge: float) -> float:
    Hv = hessian_vp(z, probs, v[0], v[1], ridge)
    gnorm = _norm(g)
    diff = _norm((Hv[0] - g[0], Hv[1] - g[1]))
    return diff / gnorm if gnorm > 0 else diff


def _detach_all(*ts: Tensor) -> list[Tensor]:
    return [t.detach() for t in ts]


def solve_cg(
    z: Tensor,
    probs: Tensor,
    g: Pair,
    ridge: float,
    x0: Pair | None = None,
    rtol: float = 1e-4,
    max_iter: int = 50,
) -> SolveResult:
    """Conjugate gradient on ``H v = g``, stopping at ``||r|| <= rtol ||g||`` or ``max_iter``.

    ``x0`` warm-starts from the previous solve (the head moves little between outer steps).
    """
    check_ridge(ridge)
    with torch.no_grad():
        z, probs, gW, gb = _detach_all(z, probs, *g)
        g = (gW, gb)
        gnorm = _norm(g)
        if x0 is None:
            x = (torch.zeros_like(gW), torch.zeros_like(gb))
            r = g
        else:
            x = (x0[0].detach().clone(), x0[1].detach().clone())
            Hx = hessian_vp(z, probs, x[0], x[1], ridge)
            r = (gW - Hx[0], gb - Hx[1])
        p, rs = r, _dot(r, r)
        it = 0
        while it < max_iter and math.sqrt(rs.item()) > rtol * gnorm:
            Hp = hessian_vp(z, probs, p[0], p[1], ridge)
            alpha = rs / _dot(p, Hp)
            x = (x[0] + alpha * p[0], x[1] + alpha * p[1])
            r = (r[0] - alpha * Hp[0], r[1] - alpha * Hp[1])
            rs_new = _dot(r, r)
            beta = rs_new / rs
            p = (r[0] + beta * p[0], r[1] + beta * p[1])
            rs, it = rs_new, it + 1
        return SolveResult(x, it, _relative_residual(z, probs, g, x, ridge))


def _dense_hessian(z: Tensor, probs: Tensor, ridge: float) -> Tensor:
    """H in the layout ``[W | b]`` flattened row-major: index ``c * (D + 1) + d``."""
    n, D = z.shape
    C = probs.shape[1]
    zt = torch.cat([z, z.new_ones(n, 1)], dim=1)
    A = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]  # [n, C, C]
    H = torch.einsum("icj,id,ie->cdje", A, zt, zt).reshape(C * (D + 1), C * (D + 1)) / n
    return H + ridge * torch.eye(C * (D + 1), dtype=z.dtype, device=z.device)


def solve_exact(z: Tensor, probs: Tensor, g: Pair, ridge: float) -> SolveResult:
    """Dense direct solve of ``H v = g`` (``iterations`` is 0). For small ``C * (D + 1)`` only."""
    check_ridge(ridge)
    C, D = g[0].shape
    size = C * (D + 1)
    if size > MAX_EXACT_SIZE:
        raise ConfigError(
            f"the exact head solve builds a {size}x{size} Hessian (C={C}, D={D}); it is limited "
            f"to C*(D+1) <= {MAX_EXACT_SIZE}. Use the CG solver (--solver cg) instead."
        )
    with torch.no_grad():
        z, probs, gW, gb = _detach_all(z, probs, *g)
        rhs = torch.cat([gW, gb[:, None]], dim=1).reshape(-1)
        sol = torch.linalg.solve(_dense_hessian(z, probs, ridge), rhs).reshape(C, D + 1)
        v = (sol[:, :D].contiguous(), sol[:, D].contiguous())
        return SolveResult(v, 0, _relative_residual(z, probs, (gW, gb), v, ridge))


def solve_neumann(
    z: Tensor, probs: Tensor, g: Pair, ridge: float, lr: float, max_iter: int
) -> SolveResult:
    """Truncated Neumann series ``v = lr * sum_{j < max_iter} (I - lr H)^j g``.

    Converges only for ``lr < 2 / λ_max(H)``, at worst at rate ``1 - lr * ridge``: slow, kept as an
    option. (``λ_min(H) = ridge`` exactly, on the directions that add one vector to every class,
    but ``g`` has no component there, so the rate that matters is set by the next eigenvalue.)
    A diverging series is returned as is; its residual says so.
    """
    check_ridge(ridge)
    with torch.no_grad():
        z, probs, gW, gb = _detach_all(z, probs, *g)
        term = (gW, gb)
        v = (lr * gW, lr * gb)
        for _ in range(max_iter - 1):
            Ht = hessian_vp(z, probs, term[0], term[1], ridge)
            term = (term[0] - lr * Ht[0], term[1] - lr * Ht[1])
            v = (v[0] + lr * term[0], v[1] + lr * term[1])
        return SolveResult(v, max_iter, _relative_residual(z, probs, (gW, gb), v, ridge))


def implicit_surrogate(
    z_tr: Tensor,
    y_tr: Tensor,
    z_val: Tensor,
    y_val: Tensor,
    W: Tensor,
    b: Tensor,
    v: Pair,
) -> Tensor:
    """Scalar whose gradient in the encoder is the implicit hypergradient (decision 5).

    ``S = CE(z_val Wᵀ + b, y_val) - <∇_φ CE_train(φ), v>`` with ``W, b, v`` held constant, so
    ``∇_z S`` carries the mixed term ``-∂²L_in/∂z∂φ · v``. The ridge does not depend on ``z`` and
    is left out. Only its gradient means anything: log the validation loss, not ``S``.
    ``v = 0`` gives the first-order variant. Add ``λ * cov_penalty(z)`` outside.
    """
    W, b, VW, vb = _detach_all(W, b, *v)
    val = F.cross_entropy(head_logits(z_val, W, b), y_val)
    resid = _ce_residual(z_tr, y_tr, W, b)  # already divided by n
    return val - (resid * head_logits(z_tr, VW, vb)).sum()


def unrolled_head(
    z_list: list[Tensor], y_list: list[Tensor], W0: Tensor, b0: Tensor, ridge: float, lr: float
) -> Pair:
    """Differentiable GD steps on :func:`inner_loss`; step ``k`` uses ``z_list[k], y_list[k]``.

    The step uses the closed-form gradient, itself built from differentiable ops, so the graph
    reaches every ``z`` (and ``W0, b0`` if they require grad) without a nested autograd call.
    """
    if len(z_list) != len(y_list):
        raise ValueError(f"got {len(z_list)} feature batches but {len(y_list)} label batches")
    W, b = W0, b0
    for z, y in zip(z_list, y_list, strict=True):
        gW, gb = inner_grad(z, y, W, b, ridge)
        W = W - lr * gW
        b = b - lr * gb
    return W, b
