"""The covariance penalty against the D×D definition (docs/method.md test 9)."""

from __future__ import annotations

import pytest
import torch

from abrl_deploy.training.methods.penalty import cov_penalty

DT = torch.float64


def _reference(z: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    return (torch.cov(z.t()) - eye).pow(2).sum()


@pytest.mark.parametrize("shape", [(5, 8), (8, 8), (12, 3)])  # B < D, B = D, B > D
def test_penalty_equals_definition_with_gradient(shape: tuple[int, int]) -> None:
    z = 2.0 * torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=DT)
    z.requires_grad_()
    got, ref = cov_penalty(z), _reference(z)
    assert got.dtype == DT
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    (g_got,) = torch.autograd.grad(got, z)
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-10, atol=1e-12)
    assert cov_penalty(z, normalize=True).item() == pytest.approx(ref.item() / shape[1], rel=1e-12)


def test_penalty_is_shift_invariant() -> None:
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    shift = torch.tensor([3.0, -7.0, 0.5, 100.0], dtype=DT)
    assert cov_penalty(z + shift).item() == pytest.approx(cov_penalty(z).item(), rel=1e-10)


def test_penalty_floor_is_d_minus_b_plus_one_and_attained() -> None:
    B, D = 5, 9
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        z = torch.randn(B, D, generator=gen, dtype=DT) * torch.rand(1, generator=gen, dtype=DT)
        assert cov_penalty(z).item() >= D - B + 1 - 1e-12
    # Attained when Cov(Z) is a rank-(B-1) projection: centred orthonormal columns, scaled.
    raw = torch.randn(B, B - 1, generator=gen, dtype=DT)
    q = torch.linalg.qr(raw - raw.mean(0))[0]  # orthonormal columns, each summing to zero
    z = torch.cat([q, torch.zeros(B, D - (B - 1), dtype=DT)], dim=1) * (B - 1) ** 0.5
    assert cov_penalty(z).item() == pytest.approx(D - B + 1, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_is_computed_in_fp32(dtype: torch.dtype) -> None:
    z64 = torch.randn(16, 32, generator=torch.Generator().manual_seed(3), dtype=DT)
    zh = z64.to(dtype).requires_grad_()
    got = cov_penalty(zh)
    assert got.dtype == torch.float32
    got.backward()
    assert zh.grad is not None and zh.grad.dtype == dtype
    assert got.item() == pytest.approx(_reference(zh.detach().double()).item(), rel=1e-5)


def test_autocast_does_not_lower_the_precision() -> None:
    """Under CPU bf16 autocast the matmuls would lose ~3 digits; the penalty must not."""
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(4))
    expected = _reference(z.double()).item()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = cov_penalty(z)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_rejects_a_single_row() -> None:
    with pytest.raises(ValueError, match="B >= 2"):
        cov_penalty(torch.zeros(1, 4))
