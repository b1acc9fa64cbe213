"""The head maths and the implicit hypergradient against independent oracles (docs/method.md,
tests 1-8).

Oracles: autograd (double backward, dense Hessians), dense solves, Newton to convergence,
Richardson finite differences and literal loops. Float64, tiny shapes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.methods.penalty import cov_penalty

DT = torch.float64
C, D, D_IN = 3, 4, 3
LAM = 0.1  # penalty weight in the outer objective

# torch.func (the dense-Hessian oracle) still calls torch.jit.script internally.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _head(seed: int = 0, scale: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return scale * torch.randn(C, D, generator=g, dtype=DT), 0.1 * torch.randn(
        C, generator=g, dtype=DT
    )


def _feats(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(n, D, generator=g, dtype=DT), torch.arange(n) % C


def _flat(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([W, b[:, None]], dim=1).reshape(-1)


def _unflat(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = x.reshape(C, D + 1)
    return m[:, :D], m[:, D]


def _autograd_hessian(z, y, W, b, ridge) -> torch.Tensor:
    """Dense Hessian of inner_loss in the flat [W | b] layout, by autograd (detached)."""
    z = z.detach()
    return torch.func.hessian(lambda x: hg.inner_loss(z, y, *_unflat(x), ridge))(
        _flat(W, b).detach()
    )


def _probs(z, W, b) -> torch.Tensor:
    return torch.softmax(hg.head_logits(z.detach(), W, b), dim=1)


# ----- a tiny encoder: z = tanh(x Aᵀ + a), no BatchNorm, so finite differences are meaningful -----


class _Problem:
    def __init__(self, seed: int = 0, n_tr: int = 8, n_val: int = 6) -> None:
        g = _gen(seed)
        self.theta = [
            (0.8 * torch.randn(D, D_IN, generator=g, dtype=DT)).requires_grad_(),
            (0.2 * torch.randn(D, generator=g, dtype=DT)).requires_grad_(),
        ]
        self.x_tr = torch.randn(n_tr, D_IN, generator=g, dtype=DT)
        self.x_val = torch.randn(n_val, D_IN, generator=g, dtype=DT)
        self.y_tr, self.y_val = torch.arange(n_tr) % C, (torch.arange(n_val) + 1) % C

    def encode(self, x: torch.Tensor, theta=None) -> torch.Tensor:
        A, a = self.theta if theta is None else theta
        return torch.tanh(x @ A.t() + a)

    def outer(self, z_tr, z_val, W, b) -> torch.Tensor:
        """L_out: validation CE plus the penalty on the training features."""
        return F.cross_entropy(hg.head_logits(z_val, W, b), self.y_val) + LAM * cov_penalty(z_tr)


def _newton(z, y, ridge, W=None, b=None, iters: int = 40):
    """argmin of inner_loss by Newton with an autograd gradient and Hessian (the φ* oracle)."""
    x = torch.zeros(C * (D + 1), dtype=DT) if W is None else _flat(W, b).detach()
    for _ in range(iters):
        xg = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(hg.inner_loss(z.detach(), y, *_unflat(xg), ridge), xg)
        if grad.norm() < 1e-15:
            break
        x = x - torch.linalg.solve(_autograd_hessian(z, y, *_unflat(x), ridge), grad)
    Wn, bn = _unflat(x)
    gW, gb = hg.inner_grad(z.detach(), y, Wn, bn, ridge)
    assert torch.cat([gW.flatten(), gb]).norm() < 1e-13, "Newton oracle did not converge"
    return Wn.contiguous(), bn.contiguous()


def _solve(name: str, z, probs, g, ridge) -> hg.SolveResult:
    if name == "cg":
        return hg.solve_cg(z, probs, g, ridge, rtol=1e-13, max_iter=500)
    if name == "exact":
        return hg.solve_exact(z, probs, g, ridge)
    lr = 1.0 / hg.bohning_bound(z, ridge)
    return hg.solve_neumann(z, probs, g, ridge, lr, max_iter=3000)


def _fused_hypergrad(p: _Problem, W, b, ridge, solver: str = "exact", first_order=False):
    """The production recipe: v under no_grad, then one backward of S + λ·pen."""
    z_tr, z_val = p.encode(p.x_tr), p.encode(p.x_val)
    g = hg.ce_grad(z_val.detach(), p.y_val, W, b)
    if first_order:
        v = (torch.zeros_like(W), torch.zeros_like(b))
    else:
        v = _solve(solver, z_tr, _probs(z_tr, W, b), g, ridge).v
    S = hg.implicit_surrogate(z_tr, p.y_tr, z_val, p.y_val, W, b, v)
    return torch.autograd.grad(S + LAM * cov_penalty(z_tr), p.theta)


def _cat(grads) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in grads])


# ----- 1. closed forms equal autograd -----


def test_inner_and_ce_grad_match_autograd() -> None:
    z, y = _feats(7)
    W, b = (t.requires_grad_() for t in _head())
    expected = torch.autograd.grad(hg.inner_loss(z, y, W, b, 0.3), (W, b))
    torch.testing.assert_close(hg.inner_grad(z, y, W, b, 0.3), expected, rtol=1e-12, atol=1e-14)
    expected_ce = torch.autograd.grad(F.cross_entropy(hg.head_logits(z, W, b), y), (W, b))
    torch.testing.assert_close(hg.ce_grad(z, y, W, b), expected_ce, rtol=1e-12, atol=1e-14)


def test_hessian_vp_matches_double_backward() -> None:
    z, y = _feats(7)
    W, b = (t.requires_grad_() for t in _head())
    VW, vb = _head(seed=1, scale=1.0)
    gW, gb = torch.autograd.grad(hg.inner_loss(z, y, W, b, 0.3), (W, b), create_graph=True)
    expected = torch.autograd.grad((gW * VW).sum() + (gb * vb).sum(), (W, b))
    got = hg.hessian_vp(z, _probs(z, W, b).detach(), VW, vb, 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_surrogate_carries_the_mixed_term() -> None:
    """∇_z S = (∇_z CE_val, -∂²L_in/∂z_tr∂φ · v) by double backward; W, b, v get nothing."""
    z_tr, y_tr = _feats(7)
    z_val, y_val = _feats(5, seed=1)
    z_tr.requires_grad_(), z_val.requires_grad_()
    W, b = (t.requires_grad_() for t in _head())
    v = _head(seed=2, scale=1.0)
    gW, gb = torch.autograd.grad(hg.inner_loss(z_tr, y_tr, W, b, 0.3), (W, b), create_graph=True)
    (mixed,) = torch.autograd.grad((gW * v[0]).sum() + (gb * v[1]).sum(), z_tr)
    (val,) = torch.autograd.grad(F.cross_entropy(hg.head_logits(z_val, W, b), y_val), z_val)
    S = hg.implicit_surrogate(z_tr, y_tr, z_val, y_val, W, b, v)
    S.backward()
    torch.testing.assert_close(z_tr.grad, -mixed, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(z_val.grad, val, rtol=1e-12, atol=1e-14)
    assert W.grad is None and b.grad is None


# ----- 2. solvers equal a dense solve; Neumann's stability edge -----


@pytest.mark.parametrize("n", [5, 30])  # separable (n < D + 1) and not
def test_cg_and_exact_match_dense_solve(n: int) -> None:
    z, y = _feats(n)
    W, b = _head()
    ridge = 1e-3
    g = _head(seed=3, scale=1.0)
    v_ref = _unflat(torch.linalg.solve(_autograd_hessian(z, y, W, b, ridge), _flat(*g)))
    cg = hg.solve_cg(z, _probs(z, W, b), g, ridge, rtol=1e-12, max_iter=200)
    exact = hg.solve_exact(z, _probs(z, W, b), g, ridge)
    torch.testing.assert_close(cg.v, v_ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(exact.v, v_ref, rtol=1e-9, atol=1e-10)
    assert cg.residual < 1e-11 and exact.residual < 1e-11
    assert 0 < cg.iterations < 200


def test_cg_warm_start_and_iteration_cap() -> None:
    z, y = _feats(7)
    W, b = _head()
    g = _head(seed=3, scale=1.0)
    probs = _probs(z, W, b)
    exact = hg.solve_exact(z, probs, g, 1e-2)
    warm = hg.solve_cg(z, probs, g, 1e-2, x0=exact.v, rtol=1e-8)
    assert warm.iterations == 0 and warm.residual < 1e-8
    capped = hg.solve_cg(z, probs, g, 1e-2, rtol=1e-12, max_iter=2)
    assert capped.iterations == 2 and capped.residual > 1e-4


def test_neumann_converges_at_one_over_L_and_diverges_past_two_over_lambda_max() -> None:
    z, y = _feats(7)
    W, b = _head()
    ridge = 0.1
    g = _head(seed=3, scale=1.0)
    probs = _probs(z, W, b)
    H = _autograd_hessian(z, y, W, b, ridge)
    v_ref = _unflat(torch.linalg.solve(H, _flat(*g)))
    L = hg.bohning_bound(z, ridge)
    good = hg.solve_neumann(z, probs, g, ridge, lr=1.0 / L, max_iter=2000)
    torch.testing.assert_close(good.v, v_ref, rtol=1e-8, atol=1e-9)
    assert good.residual < 1e-9
    lr_bad = 2.2 / torch.linalg.eigvalsh(H)[-1].item()
    assert lr_bad > 2.0 / L
    bad = hg.solve_neumann(z, probs, g, ridge, lr=lr_bad, max_iter=300)
    assert not bad.residual < 1e3


def test_solvers_reject_bad_input() -> None:
    z = torch.zeros(2, 8192, dtype=DT)
    g = (torch.ones(1, 8192, dtype=DT), torch.ones(1, dtype=DT))
    probs = torch.ones(2, 1, dtype=DT)
    with pytest.raises(ConfigError, match="CG"):
        hg.solve_exact(z, probs, g, 1e-3)
    z, y = _feats(5)
    for solve in (hg.solve_cg, hg.solve_exact):
        with pytest.raises(ConfigError, match="ridge"):
            solve(z, _probs(z, *_head()), _head(), 0.0)


# ----- 3. spectrum of H; step-size validation; inner steps -----


@pytest.mark.parametrize("n", [3, 40])  # both branches of the Gram trick
def test_hessian_spectrum_between_ridge_and_bohning_bound(n: int) -> None:
    z, y = _feats(n, seed=4)
    W, b = _head(scale=2.0)
    ridge = 1e-3
    eig = torch.linalg.eigvalsh(_autograd_hessian(3.0 * z, y, W, b, ridge))
    L = hg.bohning_bound(3.0 * z, ridge)
    assert eig[0].item() >= ridge - 1e-12
    assert eig[-1].item() <= L + 1e-12
    zt = torch.cat([3.0 * z, torch.ones(n, 1, dtype=DT)], dim=1)
    sigma = torch.linalg.svdvals(zt)[0].item()
    assert L == pytest.approx(sigma**2 / (2 * n) + ridge, rel=1e-12)


def test_validate_inner_lr() -> None:
    hg.validate_inner_lr(0.5, 1.0)
    hg.validate_inner_lr(1.999, 1.0)
    for bad in (2.0, 3.0, 0.0, -1.0):
        with pytest.raises(ConfigError, match="--inner-lr auto") as err:
            hg.validate_inner_lr(bad, 1.0)
        assert f"{bad:g}" in str(err.value) and "(0, 2)" in str(err.value)


def test_inner_steps_equal_a_literal_autograd_loop() -> None:
    z, y = _feats(7)
    z.requires_grad_()
    W0, b0 = _head()
    W, b = W0.clone(), b0.clone()
    for _ in range(5):
        Wl, bl = W.requires_grad_(), b.requires_grad_()
        gW, gb = torch.autograd.grad(hg.inner_loss(z.detach(), y, Wl, bl, 0.1), (Wl, bl))
        W, b = (Wl - 0.7 * gW).detach(), (bl - 0.7 * gb).detach()
    got = hg.inner_steps(z, y, W0, b0, 0.1, 0.7, 5)
    torch.testing.assert_close(got, (W, b), rtol=1e-12, atol=1e-14)
    assert not got[0].requires_grad and torch.equal(W0, _head()[0])  # input left untouched


# ----- 4. the implicit hypergradient equals autograd through the solution map -----


def test_ift_surrogate_matches_autograd_through_closed_form_ridge_regression() -> None:
    """Decision 5's surrogate identity on a squared-loss head, where argmin has a closed form."""
    p, mu = _Problem(), 0.05
    Y_tr = F.one_hot(p.y_tr, C).to(DT)
    Y_val = F.one_hot(p.y_val, C).to(DT)

    def tilde(z):
        return torch.cat([z, torch.ones(z.shape[0], 1, dtype=DT)], dim=1)

    def l_out(z_val, theta_h):
        return 0.5 * (tilde(z_val) @ theta_h.t() - Y_val).pow(2).mean()

    zt_tr = tilde(p.encode(p.x_tr))
    n, k = zt_tr.shape
    gram = zt_tr.t() @ zt_tr / n + mu * torch.eye(k, dtype=DT)
    theta_star = torch.linalg.solve(gram, zt_tr.t() @ Y_tr / n).t()  # [C, D + 1]
    expected = torch.autograd.grad(l_out(p.encode(p.x_val), theta_star), p.theta)

    th = theta_star.detach()
    z_val = p.encode(p.x_val)
    g = torch.autograd.grad(l_out(z_val.detach(), th.requires_grad_()), th)[0]
    v = torch.linalg.solve(gram.detach(), g.t()).t()  # H acts on the right: V (Z̃ᵀZ̃/n + μ)
    zt_tr = tilde(p.encode(p.x_tr))
    grad_in = (zt_tr @ th.detach().t() - Y_tr).t() @ zt_tr / n  # ∇_Θ L_in with Θ fixed, z live
    S = l_out(z_val, th.detach()) - (grad_in * v).sum()
    torch.testing.assert_close(torch.autograd.grad(S, p.theta), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["cg", "exact", "neumann"])
def test_implicit_matches_autograd_through_newton_solution(solver: str) -> None:
    """Newton steps with a detached Hessian are differentiated exactly at their fixed point."""
    p, ridge = _Problem(seed=1), 0.05
    W, b = _newton(p.encode(p.x_tr), p.y_tr, ridge)
    z_tr = p.encode(p.x_tr)
    x = _flat(W, b)
    for _ in range(3):
        xg = x if x.requires_grad else x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(
            hg.inner_loss(z_tr, p.y_tr, *_unflat(xg), ridge), xg, create_graph=True
        )
        x = xg - torch.linalg.solve(_autograd_hessian(z_tr, p.y_tr, *_unflat(x), ridge), grad)
    expected = torch.autograd.grad(p.outer(z_tr, p.encode(p.x_val), *_unflat(x)), p.theta)
    got = _fused_hypergrad(p, W, b, ridge, solver)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


# ----- 5. finite differences of F(θ) = L_out(θ, φ*(θ)) -----


@pytest.mark.parametrize("solver", ["cg", "exact", "neumann"])
def test_fused_hypergrad_matches_richardson_finite_difference(solver: str) -> None:
    p, ridge = _Problem(seed=2), 0.05
    W, b = _newton(p.encode(p.x_tr), p.y_tr, ridge)
    direction = [torch.randn(t.shape, generator=_gen(7), dtype=DT) for t in p.theta]

    def F_of(h: float) -> float:
        with torch.no_grad():
            theta = [t + h * d for t, d in zip(p.theta, direction, strict=True)]
            z_tr, z_val = p.encode(p.x_tr, theta), p.encode(p.x_val, theta)
        Wh, bh = _newton(z_tr, p.y_tr, ridge, W, b, iters=8)
        return p.outer(z_tr, z_val, Wh, bh).item()

    def central(h: float) -> float:
        return (F_of(h) - F_of(-h)) / (2 * h)

    h = 1e-3
    fd = (4 * central(h / 2) - central(h)) / 3  # Richardson: error O(h⁴)
    got = (_cat(_fused_hypergrad(p, W, b, ridge, solver)) * _cat(direction)).sum().item()
    assert got == pytest.approx(fd, rel=1e-7, abs=1e-10)


# ----- 6. the single fused backward equals a generic two-backward implementation -----


def test_fused_single_backward_equals_generic_two_backward() -> None:
    """At an unconverged head, so the identity is not helped by ∇_φ L_in = 0."""
    p, ridge = _Problem(seed=3), 1e-3
    W, b = _head(seed=5)
    z_tr, z_val = p.encode(p.x_tr), p.encode(p.x_val)
    Wl, bl = W.clone().requires_grad_(), b.clone().requires_grad_()
    l_out = p.outer(z_tr, z_val, Wl, bl)
    g = torch.autograd.grad(l_out, (Wl, bl), retain_graph=True)
    v = torch.linalg.solve(_autograd_hessian(z_tr, p.y_tr, W, b, ridge), _flat(*g))
    grad_in = torch.autograd.grad(
        hg.inner_loss(z_tr, p.y_tr, Wl, bl, ridge), (Wl, bl), create_graph=True
    )  # backward 1
    mixed = (_flat(*grad_in) * v).sum()
    expected = torch.autograd.grad(l_out - mixed, p.theta)  # backward 2
    torch.testing.assert_close(_fused_hypergrad(p, W, b, ridge), expected, rtol=1e-10, atol=1e-13)


# ----- 7. unrolled to convergence equals implicit; first-order does not -----


def test_unrolled_to_convergence_equals_implicit_and_first_order_differs() -> None:
    p, ridge = _Problem(seed=4), 0.2
    W, b = _newton(p.encode(p.x_tr), p.y_tr, ridge)
    z_tr, z_val = p.encode(p.x_tr), p.encode(p.x_val)
    lr, K = 1.0 / hg.bohning_bound(z_tr, ridge), 120  # error shrinks like (1 - lr·ridge)^K
    Wk, bk = hg.unrolled_head([z_tr] * K, [p.y_tr] * K, W, b, ridge, lr)
    unrolled = _cat(torch.autograd.grad(p.outer(z_tr, z_val, Wk, bk), p.theta))
    implicit = _cat(_fused_hypergrad(p, W, b, ridge))
    first_order = _cat(_fused_hypergrad(p, W, b, ridge, first_order=True))
    torch.testing.assert_close(unrolled, implicit, rtol=1e-6, atol=1e-9)
    assert (first_order - implicit).norm() > 0.05 * implicit.norm()


def test_unrolled_head_steps_equal_inner_steps() -> None:
    z, y = _feats(7)
    W0, b0 = _head()
    got = hg.unrolled_head([z] * 4, [y] * 4, W0, b0, 0.1, 0.7)
    torch.testing.assert_close(
        got, hg.inner_steps(z, y, W0, b0, 0.1, 0.7, 4), rtol=1e-12, atol=1e-14
    )
    with pytest.raises(ValueError, match="label batches"):
        hg.unrolled_head([z] * 2, [y], W0, b0, 0.1, 0.7)


# ----- 8. memory: saved activations are flat in K (implicit), linear in K (unrolled) -----


def _saved_bytes(loss_fn) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()  # the graph must still be usable
    return total


def test_saved_bytes_flat_in_K_for_implicit_and_linear_for_unrolled() -> None:
    p, ridge, lr = _Problem(seed=5, n_tr=16, n_val=16), 1e-2, 0.2
    x_fresh = torch.randn(8, 16, D_IN, generator=_gen(9), dtype=DT)
    W0, b0 = _head()

    def implicit(K: int):
        z_tr, z_val = p.encode(p.x_tr), p.encode(p.x_val)
        W, b = hg.inner_steps(z_tr, p.y_tr, W0, b0, ridge, lr, K)
        g = hg.ce_grad(z_val.detach(), p.y_val, W, b)
        v = hg.solve_cg(z_tr, _probs(z_tr, W, b), g, ridge).v
        return hg.implicit_surrogate(z_tr, p.y_tr, z_val, p.y_val, W, b, v)

    def unrolled(K: int):  # one encoder forward per inner step, as with fresh batches
        z_list = [p.encode(x_fresh[k]) for k in range(K)]
        W, b = hg.unrolled_head(z_list, [p.y_tr] * K, W0, b0, ridge, lr)
        return F.cross_entropy(hg.head_logits(p.encode(p.x_val), W, b), p.y_val)

    ks = [1, 2, 3, 4, 6]
    flat = [_saved_bytes(lambda k=k: implicit(k)) for k in ks]
    assert len(set(flat)) == 1 and flat[0] > 0
    grow = [_saved_bytes(lambda k=k: unrolled(k)) for k in ks]
    step = grow[1] - grow[0]
    encoder_only = _saved_bytes(lambda: p.encode(x_fresh[0]).sum())
    assert step > encoder_only  # each inner step keeps at least one activation set
    assert grow == [grow[0] + (k - 1) * step for k in ks]
