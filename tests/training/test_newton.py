"""The inner solve that the implicit formula needs: Newton reaches stationarity and the dense
optimum; the trainer's hypergradient at its solved head equals finite differences of the outer
loss through the exact inner solution; a step at an unconverged head is flagged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_abrl_method import batches, dense_newton, tiny_method

from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.methods.newton import newton_head, woodbury_direction
from abrl_deploy.training.methods.penalty import cov_penalty


def _problem(n=12, D=7, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g, dtype=torch.float64)
    W = 0.3 * torch.randn(C, D, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(C, generator=g, dtype=torch.float64)
    return z, torch.arange(n) % C, W, b


def _dense_optimum(z, y, C, ridge):
    """An independent solver: dense Newton on autograd's loss and Hessian, with step halving."""
    D = z.shape[1]

    def loss(p):
        W, b = p[: C * D].view(C, D), p[C * D :]
        return F.cross_entropy(z @ W.t() + b, y) + 0.5 * ridge * p.pow(2).sum()

    p = dense_newton(loss, torch.zeros(C * (D + 1), dtype=z.dtype))
    return p[: C * D].view(C, D), p[C * D :]


def test_woodbury_direction_equals_dense_solve():
    z, _, W, b = _problem()
    probs = torch.softmax(hg.head_logits(z, W, b), 1)
    r = (torch.randn_like(W), torch.randn_like(b))
    got = woodbury_direction(z, probs, *r, 1e-2)
    want = hg.solve_exact(z, probs, r, 1e-2).v
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direction", ["woodbury", "cg"])
@pytest.mark.parametrize("n", [6, 30])  # separable (n < D + 1) and not
def test_newton_reaches_tolerance_and_the_dense_optimum(direction, n):
    z, y, W0, b0 = _problem(n=n)
    ridge, tol = 1e-2, 1e-10
    res = newton_head(z, y, W0, b0, ridge, tol, 50, method=direction)
    assert res.residual <= tol and res.iterations < 50
    gW, gb = hg.inner_grad(z, y, res.W, res.b, ridge)
    assert torch.cat([gW.flatten(), gb]).norm() <= tol  # the reported residual is the real one
    W, b = _dense_optimum(z, y, W0.shape[0], ridge)
    torch.testing.assert_close(res.W, W, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(res.b, b, rtol=1e-7, atol=1e-9)


def test_newton_stops_at_the_iteration_cap_and_says_where_it_is():
    z, y, W0, b0 = _problem()
    res = newton_head(z, y, W0 * 0, b0 * 0, 1e-3, 1e-14, 1)
    assert res.iterations == 1 and res.residual > 1e-6


def test_newton_keeps_the_callers_dtype():
    z, y, W0, b0 = _problem()
    res = newton_head(z.float(), y, W0.float(), b0.float(), 1e-2, 1e-6, 50)
    assert res.W.dtype == torch.float32 and res.residual <= 1e-6


def _outer_through_exact_head(method, tr, val, m):
    """F(θ) = CE_val(φ*(θ)) + λ·pen(Z_tr), φ* the converged head of this θ's centred features
    (the centre m held at its value, as the method holds it: a detached batch statistic)."""
    (x_tr, y_tr), (x_val, y_val) = tr, val
    with torch.no_grad():
        z = method.model.forward_features(torch.cat([x_tr, x_val]))
        z_tr, z_val = z[: len(x_tr)], z[len(x_tr) :]
        res = newton_head(z_tr - m, y_tr, method.W, method.b, method.cfg.ridge, 1e-13, 100)
        val = F.cross_entropy(hg.head_logits(z_val - m, res.W, res.b), y_val)
        return (val + method.cfg.lambda_ * cov_penalty(z_tr)).item()


def test_trainer_hypergradient_equals_finite_differences_through_the_exact_head():
    method = tiny_method(inner_solve="newton", inner_tol=1e-10)
    tr, val = batches(0)
    W0, b0 = method.W.clone(), method.b.clone()
    with torch.no_grad():
        m = method.model.forward_features(tr[0]).mean(0)
    method.model.zero_grad()
    method.step(tr, val)
    params = list(method.model.encoder.parameters())
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction, strict=True)).item()
    method.W, method.b = W0, b0  # F starts each solve from the same warm start

    def F_at(h: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        value = _outer_through_exact_head(method, tr, val, m)
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(h * d)
        return value

    def central(h: float) -> float:
        return (F_at(h) - F_at(-h)) / (2 * h)

    h = 1e-3
    richardson = (4 * central(h / 2) - central(h)) / 3
    assert analytic == pytest.approx(richardson, rel=1e-5)


def test_an_implicit_step_at_an_unconverged_head_is_flagged():
    # One tiny gradient step leaves the head far from stationary: the epoch summary says so.
    method = tiny_method(inner_solve="steps", inner_steps=1, inner_lr=1e-3)
    for seed in range(3):
        method.step(*batches(seed))
    summary, warnings = method.epoch_diagnostics()
    s = summary["hypergrad_diagnostics"]
    assert s["steps"] == 3 and s["nonstationary_fraction"] == 1.0
    assert s["inner_residual_over_ridge"]["median"] > 1
    assert len(warnings) == 1 and "non-stationary head in 3/3 steps" in warnings[0]
    # Newton meets the assumption on the same batches: nothing to say.
    solved = tiny_method(inner_solve="newton")
    for seed in range(3):
        solved.step(*batches(seed))
    summary, warnings = solved.epoch_diagnostics()
    assert warnings == [] and summary["hypergrad_diagnostics"]["nonstationary_fraction"] == 0
    assert summary["hypergrad_diagnostics"]["newton_iterations"]["max"] >= 1
    assert solved.epoch_diagnostics() == ({}, [])  # records reset each epoch


def test_an_unsolved_linear_system_is_flagged():
    method = tiny_method(inner_solve="newton", solver="cg", cg_max_iter=1, cg_rtol=1e-12)
    method.step(*batches(0))
    summary, warnings = method.epoch_diagnostics()
    assert summary["hypergrad_diagnostics"]["solve_unconverged_fraction"] == 1.0
    assert any("H v = g was not solved" in w for w in warnings)


def test_only_a_real_miss_of_the_cg_tolerance_is_flagged():
    """fp32 round-off just above rtol is a converged solve; twice rtol and more is not."""
    from types import SimpleNamespace

    from abrl_deploy.training.methods.diagnostics import CG_SLACK, StepRecords

    cfg = SimpleNamespace(cg_rtol=1e-4, hypergrad="implicit", inner_tol=1e-3)
    records = StepRecords(cfg)
    for residual in (5e-5, 1.16e-4, CG_SLACK * 1e-4, 2.5e-4):
        records.add({"inner_residual_over_ridge": 1e-4, "cg_residual": residual})
    summary, warnings = records.summarise()
    assert summary["hypergrad_diagnostics"]["solve_unconverged_fraction"] == 0.25
    assert len(warnings) == 1 and "in 1/4 steps" in warnings[0]
