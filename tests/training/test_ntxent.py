"""NT-Xent against a literal loop and a closed form (docs/method.md test 10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from abrl_deploy.training.methods.ntxent import nt_xent

DT = torch.float64


def _literal(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """-log of each row's positive against its 2N - 1 others, averaged over the 2N rows."""
    z = [F.normalize(r, dim=0) for r in torch.cat([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_equals_literal_loop(tau: float) -> None:
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(5, 7, generator=gen, dtype=DT)
    z2 = 3.0 * torch.randn(5, 7, generator=gen, dtype=DT)  # scale must not matter
    assert nt_xent(z1, z2, tau).item() == pytest.approx(_literal(z1, z2, tau), rel=1e-12)


def test_nt_xent_closed_form_for_identical_orthonormal_views() -> None:
    """Positive similarity 1, every negative 0: loss = log(1 + (2N - 2) e^{-1/τ})."""
    n, tau = 4, 0.5
    q = torch.linalg.qr(torch.randn(6, n, generator=torch.Generator().manual_seed(1), dtype=DT))[0]
    got = nt_xent(q.t(), q.t().clone(), tau).item()
    assert got == pytest.approx(math.log1p((2 * n - 2) * math.exp(-1 / tau)), rel=1e-12)
    assert nt_xent(q.t(), q.t()).item() == pytest.approx(got, rel=1e-12)  # τ = 0.5 by default


def test_nt_xent_gradient_is_finite_and_rejects_mismatched_views() -> None:
    z1 = torch.randn(3, 4, dtype=DT, requires_grad=True)
    nt_xent(z1, torch.randn(3, 4, dtype=DT)).backward()
    assert torch.isfinite(z1.grad).all()
    with pytest.raises(ValueError, match="one shape"):
        nt_xent(torch.zeros(3, 4), torch.zeros(2, 4))
