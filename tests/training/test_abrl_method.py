"""The ABRL method as the trainer drives it: docs/method.md test 11, and its fused step against an
independent generic implementation (catches wiring bugs: centring, splits, solver, penalty)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.config import TrainConfig
from abrl_deploy.training.methods import get_method
from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.methods.penalty import cov_penalty
from abrl_deploy.training.models import Classifier

D, C = 6, 3


def tiny_method(**cfg_changes):
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, D), nn.Tanh())
    model = Classifier(encoder, D, C).double()
    values = dict(method="abrl", solver="exact", lambda_=0.3, inner_steps=4, inner_lr=0.5,
                  penalty_norm=False, inner_solve="steps", inner_problem="batch")  # fmt: skip
    cfg = TrainConfig(**{**values, **cfg_changes})
    return get_method("abrl")(cfg, model, None, torch.device("cpu"))


def batches(seed: int):
    g = torch.Generator().manual_seed(seed)
    x_tr, x_val = (
        torch.randn(10, 3, 2, 2, generator=g).double(),
        torch.randn(5, 3, 2, 2, generator=g).double(),
    )
    return (x_tr, torch.arange(10) % C), (x_val, torch.arange(5) % C)


def dense_newton(loss, p, iters: int = 100):
    """An independent minimiser: dense Newton on autograd's gradient and Hessian, step halving."""
    for _ in range(iters):
        g = torch.autograd.functional.jacobian(loss, p)
        if g.norm() < 1e-13:
            break
        d = torch.linalg.solve(torch.autograd.functional.hessian(loss, p), g)
        t = 1.0
        while loss(p - t * d) > loss(p) and t > 1e-8:
            t /= 2
        p = p - t * d
    assert torch.autograd.functional.jacobian(loss, p).norm() < 1e-12
    return p.detach()


def generic_hypergrad(method, W0, b0, tr, val):
    """Two backward passes with autograd's double backward, no closed forms, a dense solve."""
    (x_tr, y_tr), (x_val, y_val) = tr, val
    params = list(method.model.encoder.parameters())
    z = method.model.forward_features(torch.cat([x_tr, x_val]))
    z_tr, z_val = z[:10], z[10:]
    m = z_tr.detach().mean(0)

    def split(p):
        return p[: C * D].view(C, D), p[C * D :]

    def inner(p):
        return hg.inner_loss((z_tr - m).detach(), y_tr, *split(p), method.cfg.ridge)

    W, b = W0.clone(), b0.clone()
    if method.cfg.inner_solve == "newton":
        W, b = split(dense_newton(inner, torch.cat([W.flatten(), b])))
    for _ in range(method.cfg.inner_steps if method.cfg.inner_solve == "steps" else 0):
        Wr, br = W.requires_grad_(), b.requires_grad_()
        gW, gb = torch.autograd.grad(
            hg.inner_loss((z_tr - m).detach(), y_tr, Wr, br, method.cfg.ridge), [Wr, br]
        )
        W, b = (W - 0.5 * gW).detach(), (b - 0.5 * gb).detach()
    phi = torch.cat([W.flatten(), b]).requires_grad_()

    hess = torch.autograd.functional.hessian(
        lambda p: hg.inner_loss((z_tr - m).detach(), y_tr, *split(p), method.cfg.ridge),
        phi.detach(),
    )
    outer = torch.nn.functional.cross_entropy(hg.head_logits(z_val - m, *split(phi)), y_val)
    outer = outer + method.cfg.lambda_ * cov_penalty(z_tr)
    g_phi = torch.autograd.grad(outer, phi, retain_graph=True)[0]
    v = torch.linalg.solve(hess, g_phi)
    direct = torch.autograd.grad(outer, params, retain_graph=True)
    grad_phi_in = torch.autograd.grad(
        hg.inner_loss(z_tr - m, y_tr, *split(phi), method.cfg.ridge), phi, create_graph=True
    )[0]
    mixed = torch.autograd.grad(grad_phi_in @ v, params)
    return [d - mx for d, mx in zip(direct, mixed, strict=True)], (W, b)


@pytest.mark.parametrize("inner_solve", ["steps", "newton"])
def test_fused_step_equals_generic_two_backward_implementation(inner_solve):
    method = tiny_method(inner_solve=inner_solve, inner_tol=1e-9)
    for seed in range(3):  # several steps: the head and v persist between them
        tr, val = batches(seed)
        W0, b0 = method.W.clone(), method.b.clone()
        expected, (W, b) = generic_hypergrad(method, W0, b0, tr, val)
        method.model.zero_grad()
        method.step(tr, val)
        got = [p.grad for p in method.model.encoder.parameters()]
        # Newton stops at ||grad|| <= 1e-12, not at the exact optimum: 1e-6 relative.
        rtol = 1e-7 if inner_solve == "steps" else 1e-6
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(g, e, rtol=rtol, atol=1e-10)
        torch.testing.assert_close(method.W, W)
        torch.testing.assert_close(method.b, b)


def test_head_persists_and_residual_is_logged():
    method = tiny_method()
    tr, val = batches(0)
    first = method.step(tr, val)
    W1, b1 = method.W.clone(), method.b.clone()
    second = method.step(*batches(1))
    # No optimizer step ran, so the encoder is unchanged: recompute batch 1's centred features.
    x1, y1 = batches(1)[0]
    z1 = method.model.forward_features(x1).detach()
    z1 = z1 - z1.mean(0)
    warm, _ = hg.inner_steps(z1, y1, W1, b1, 1e-3, 0.5, 4)
    cold, _ = hg.inner_steps(z1, y1, W1 * 0, b1 * 0, 1e-3, 0.5, 4)
    torch.testing.assert_close(method.W, warm)  # continued from W1 ...
    assert not torch.allclose(method.W, cold)  # ... not re-initialised
    assert method.steps_done == 2
    for out in (first, second):  # the loss reported is L_out, never the surrogate
        assert out.logged["inner_residual"] > 0 and out.logged["outer_loss"] > 0
        assert out.loss == out.logged["outer_loss"]
    state = method.state_dict()
    fresh = tiny_method()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.W, method.W) and torch.equal(fresh.b, method.b)


def test_config_rejects_non_positive_ridge():
    for ridge in (0.0, -1e-3):
        with pytest.raises(ConfigError, match="ridge"):
            TrainConfig(ridge=ridge)


def test_step_rejects_inner_lr_at_or_above_two_over_l():
    method = tiny_method(inner_lr=1e6)
    with pytest.raises(ConfigError, match="inner-lr auto"):
        method.step(*batches(0))


def test_folded_head_equals_centred_head():
    method = tiny_method()
    method.step(*batches(0))
    method.sync_head()
    x = batches(2)[0][0]
    z = method.model.forward_features(x)
    expected = hg.head_logits(z - method.feature_mean, method.W, method.b)
    torch.testing.assert_close(method.model(x), expected)
