"""ABRL's inner problem over the training split (issue 23): with a memory that holds the whole
split on frozen features, the memory estimator's hypergradient is the exact split hypergradient;
the split-level diagnostic tells a head solved on one batch from a head of the split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from abrl_deploy.training.config import TrainConfig
from abrl_deploy.training.methods import get_method
from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.methods.diagnostics import split_diagnostics
from abrl_deploy.training.methods.feature_memory import FeatureMemory
from abrl_deploy.training.methods.newton import newton_head
from abrl_deploy.training.models import Classifier

N, B, NV, D, C = 120, 12, 10, 5, 4
RIDGE = 1e-2


def problem(seed: int = 0):
    """Frozen features: the encoder is the identity on [rows, D] inputs, in float64."""
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(C, D, generator=g, dtype=torch.float64)
    y = torch.arange(N) % C
    z = centres[y] + torch.randn(N, D, generator=g, dtype=torch.float64)
    yv = torch.arange(NV) % C
    zv = centres[yv] + torch.randn(NV, D, generator=g, dtype=torch.float64)
    return z, y, zv, yv


def method_for(inner_problem: str, **changes):
    values = dict(method="abrl", inner_problem=inner_problem, ridge=RIDGE, lambda_=0.0,
                  center_features=False, solver="cg", cg_rtol=1e-13, memory_newton_steps=60,
                  memory_cg_iters=400, inner_tol=1e-9, split_diagnostic_rows=0)  # fmt: skip
    cfg = TrainConfig(**{**values, **changes})
    model = Classifier(nn.Flatten(), D, C).double()
    method = get_method("abrl")(cfg, model, None, torch.device("cpu"))
    if inner_problem == "memory":
        method.memory = FeatureMemory(N, D, torch.float64, torch.device("cpu"))
    return method


def exact_split_hypergradient(z, y, zv, yv):
    """Head solved on all N rows, H v = g solved densely on all N rows: the gradient of the outer
    loss at φ*(z) with respect to every train and validation feature."""
    best = newton_head(z, y, torch.zeros(C, D).double(), torch.zeros(C).double(), RIDGE, 1e-13, 100)
    probs = torch.softmax(hg.head_logits(z, best.W, best.b), 1)
    v = hg.solve_exact(z, probs, hg.ce_grad(zv, yv, best.W, best.b), RIDGE).v
    zt, zvt = z.clone().requires_grad_(), zv.clone().requires_grad_()
    hg.implicit_surrogate(zt, y, zvt, yv, best.W, best.b, v).backward()
    return zt.grad, zvt.grad, best


def estimator_hypergradient(method, z, y, zv, yv, rows, fill=True):
    if fill and method.memory is not None:
        method.memory.update(torch.arange(N), z, y)  # the whole split, as after one epoch
    xb = z[rows].clone().requires_grad_()
    xv = zv.clone().requires_grad_()
    method.step((xb, y[rows], rows), (xv, yv))
    return xb.grad, xv.grad


def test_memory_hypergradient_is_the_exact_split_hypergradient():
    z, y, zv, yv = problem()
    grad_tr, grad_val, best = exact_split_hypergradient(z, y, zv, yv)
    rows = torch.tensor([3, 17, 40, 41, 58, 60, 77, 90, 99, 100, 110, 119])
    method = method_for("memory")
    gb, gv = estimator_hypergradient(method, z, y, zv, yv, rows)
    torch.testing.assert_close(method.W, best.W, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(gv, grad_val, rtol=1e-8, atol=1e-12)
    # the cross term reaches the batch's rows as a batch mean: N/B times each row's share
    torch.testing.assert_close(gb * B / N, grad_tr[rows], rtol=1e-8, atol=1e-12)


def test_the_batch_mean_cross_term_is_unbiased_over_batches():
    """Averaged over a partition of the split into batches, the batch-mean cross term gives the
    split's: the estimate of the train rows' part is exact on average, not only in law."""
    z, y, zv, yv = problem(1)
    grad_tr, _, _ = exact_split_hypergradient(z, y, zv, yv)
    method = method_for("memory")
    total = torch.zeros_like(z)
    for rows in torch.arange(N).reshape(-1, B):
        gb, _ = estimator_hypergradient(method, z, y, zv, yv, rows)
        total[rows] = gb * B / N
    torch.testing.assert_close(total, grad_tr, rtol=1e-8, atol=1e-12)


def test_the_batch_estimator_is_not_the_split_one():
    """Today's estimator (kept as `batch`) solves the head on 12 rows: its hypergradient is far
    from the split's, which is what the memory fixes."""
    z, y, zv, yv = problem()
    grad_tr, grad_val, _ = exact_split_hypergradient(z, y, zv, yv)
    rows = torch.arange(B)
    _, gv = estimator_hypergradient(method_for("batch"), z, y, zv, yv, rows)
    assert not torch.allclose(gv, grad_val, rtol=1e-3, atol=1e-6)


class Rows(torch.utils.data.Dataset):
    def __init__(self, z, y):
        self.z, self.y = z, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.z[i], int(self.y[i])


def test_split_diagnostic_flags_a_head_stationary_on_the_batch_only():
    z, y, zv, yv = problem()
    rows = torch.arange(B)
    batch = method_for("batch")
    estimator_hypergradient(batch, z, y, zv, yv, rows)
    on_batch = hg.inner_residual(z[rows], y[rows], batch.W, batch.b, RIDGE) / RIDGE
    split = split_diagnostics(batch, Rows(z, y), rows=N)
    assert on_batch <= 1e-3 and split["residual_over_ridge"] > 1.0
    assert split["distance_to_optimum"] > 0.1
    memory = method_for("memory")
    estimator_hypergradient(memory, z, y, zv, yv, rows)
    split = split_diagnostics(memory, Rows(z, y), rows=N)
    assert split["residual_over_ridge"] <= 1e-3 and split["distance_to_optimum"] < 1e-6


def test_memory_reports_staleness_of_the_rows_it_overwrites():
    memory = FeatureMemory(4, 2, torch.float64, torch.device("cpu"))
    rows = torch.tensor([0, 1])
    assert memory.update(rows, torch.ones(2, 2).double(), torch.tensor([0, 1])) is None
    stale = memory.update(rows, 2 * torch.ones(2, 2).double(), torch.tensor([0, 1]))
    assert stale == pytest.approx(0.5)
    z, y = memory.rows()
    assert len(z) == 2 and torch.equal(y, torch.tensor([0, 1]))


def test_unrolled_needs_the_batch_problem():
    from abrl_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="--inner-problem batch"):
        TrainConfig(hypergrad="unrolled", inner_solve="steps", inner_problem="memory")
    TrainConfig(hypergrad="unrolled", inner_solve="steps", inner_problem="batch")


def test_a_memory_run_records_its_estimator_and_the_split_residual(tmp_path):
    import json

    from abrl_deploy.training import train

    # grad_clip: unclipped, this tiny memory run diverged at step 6 (the memory's exact split
    # hypergradient is large; README, "ABRL given its fair chance")
    cfg = TrainConfig(method="abrl", inner_problem="memory", epochs=2, limit=120, image_size=8,
                      batch_size=32, device="cpu", data_cache="off", grad_clip=10.0)  # fmt: skip
    card = train(cfg, tmp_path / "run", quiet=True).card
    assert card.head["inner_problem"] == "memory" and card.config["inner_problem"] == "memory"
    split = card.head["split_diagnostics"]
    assert split["rows"] == card.data_splits["train"] and split["residual_over_ridge"] >= 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    diag = rows[1]["hypergrad_diagnostics"]
    assert "memory_staleness" in diag and diag["memory_mb"] > 0  # epoch 2 overwrites epoch 1's


def test_amortized_converges_to_the_split_head_and_v_on_a_fixed_problem():
    """SOBA steps on random batches of a fixed split (frozen features) reach φ* and H⁻¹ g of the
    whole split: the stochastic estimator tracks the split's problem, not a batch's."""
    from abrl_deploy.training.methods import amortized

    z, y, zv, yv = problem(2)
    ridge = 0.1  # well conditioned, so that a few thousand steps converge
    zeros = (torch.zeros(C, D).double(), torch.zeros(C).double())
    best = newton_head(z, y, *zeros, ridge, 1e-13, 100)
    probs = torch.softmax(hg.head_logits(z, best.W, best.b), 1)
    v_star = hg.solve_exact(z, probs, hg.ce_grad(zv, yv, best.W, best.b), ridge).v
    g = torch.Generator().manual_seed(0)
    W, b, v = *zeros, zeros
    for t in range(6000):
        rows = torch.randperm(N, generator=g)[:B]
        vrows = torch.randperm(NV, generator=g)[:4]
        rho = amortized.step_size(0.5, z[rows], ridge, t)
        W, b, v = amortized.soba_step(z[rows], y[rows], zv[vrows], yv[vrows], W, b, v, ridge, rho)
    assert (W - best.W).norm() / best.W.norm() < 0.05
    assert (
        F_cos(torch.cat([v[0].flatten(), v[1]]), torch.cat([v_star[0].flatten(), v_star[1]])) > 0.95
    )


def F_cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def test_amortized_first_fits_the_head_on_the_whole_split():
    from abrl_deploy.training.data import load_dataset
    from abrl_deploy.training.models import build_classifier

    splits = load_dataset("digits", limit=120, image_size=8)
    cfg = TrainConfig(method="abrl", inner_problem="amortized", device="cpu")
    model = build_classifier("resnet18", splits.num_classes, stem="cifar")
    method = get_method("abrl")(cfg, model, splits, torch.device("cpu"))
    method._fit_on_split()
    n = len(splits.train_eval)
    split = split_diagnostics(method, splits.train_eval, rows=n)
    assert split["rows"] == n and split["residual_over_ridge"] <= 1e-2
    assert split["distance_to_optimum"] < 1e-3
    assert method.v is not None and float(method.v[0].abs().sum()) == 0.0


def test_an_amortized_run_records_its_estimator(tmp_path):
    from abrl_deploy.training import train

    cfg = TrainConfig(method="abrl", inner_problem="amortized", epochs=1, limit=120, image_size=8,
                      batch_size=32, device="cpu", data_cache="off")  # fmt: skip
    card = train(cfg, tmp_path / "run", quiet=True).card
    assert card.head["inner_problem"] == "amortized" and "split_diagnostics" in card.head


def test_non_finite_split_diagnostics_are_a_warning(monkeypatch):
    import abrl_deploy.training.methods.abrl as abrl_module

    method = method_for("batch", split_diagnostic_rows=10)
    method.splits = type("S", (), {"train_eval": Rows(*problem()[:2])})()
    monkeypatch.setattr(
        abrl_module, "split_diagnostics", lambda *a: {"residual_over_ridge": math_nan()}
    )
    _, warnings = method.epoch_diagnostics()
    assert any("not finite" in w for w in warnings)


def math_nan():
    return float("nan")


def _digits_method(**changes):
    from abrl_deploy.training.data import load_dataset
    from abrl_deploy.training.models import build_classifier

    splits = load_dataset("digits", limit=120, image_size=8)
    values = dict(method="abrl", inner_problem="memory", device="cpu", split_diagnostic_rows=0)
    cfg = TrainConfig(**{**values, **changes})
    model = build_classifier("resnet18", splits.num_classes, stem="cifar")
    return get_method("abrl")(cfg, model, splits, torch.device("cpu")), splits


def test_the_memory_holds_every_row_and_a_solved_head_before_the_first_step():
    """Without the fill the first steps solve a 64-row problem from a zero head (far from
    stationary, where the implicit step is scaled by 1/ridge): a pretrained encoder broke."""
    from abrl_deploy.training.methods.abrl import IndexedRows

    method, splits = _digits_method()
    rows = IndexedRows(splits.train)
    x, y, i = (torch.stack([rows[k][0] for k in range(8)]), torch.tensor([rows[k][1] for k in
               range(8)]), torch.arange(8))  # fmt: skip
    xv, yv = (
        torch.stack([splits.val[k][0] for k in range(4)]),
        torch.tensor([splits.val[k][1] for k in range(4)]),
    )
    method.step((x, y, i), (xv, yv))
    assert bool(method.memory.filled.all()), "the memory held only the first batch's rows"
    fill = method.memory_fill
    assert fill["rows"] == len(splits.train) and fill["residual_over_ridge"] <= method.cfg.inner_tol


def test_the_epoch_end_refresh_is_the_eval_mode_split_and_its_solved_head():
    from abrl_deploy.training.methods.diagnostics import encode_rows

    method, splits = _digits_method()
    n = len(splits.train_eval)
    stale = torch.randn(n, method.model.feature_dim)  # a memory of another encoder
    method.memory.update(torch.arange(n), stale, torch.tensor([splits.train_eval[k][1]
                                                               for k in range(n)]))  # fmt: skip
    method.end_epoch()
    z, y = encode_rows(method, splits.train_eval, range(n))
    assert torch.allclose(method.memory.z, z) and torch.equal(method.memory.y, y)
    assert torch.allclose(method.feature_mean, z.mean(0))
    residual = hg.inner_residual(z - z.mean(0), y, method.W, method.b, method.cfg.ridge)
    assert residual <= 2 * method.cfg.inner_tol * method.cfg.ridge
    assert method.refresh["staleness_median"] > 0.5  # the stale memory was measured as stale


def test_no_refresh_when_turned_off():
    method, splits = _digits_method(head_refresh=False)
    method.end_epoch()
    assert method.refresh is None and not bool(method.memory.filled.any())


def test_equal_labels_fine_tune_sees_only_n_rows_for_as_many_steps():
    from abrl_deploy.training.data import load_dataset
    from abrl_deploy.training.models import build_classifier

    splits = load_dataset("digits", limit=120, image_size=8)
    cfg = TrainConfig(method="finetune", label_rows=10, device="cpu")
    model = build_classifier("resnet18", splits.num_classes, stem="cifar")
    method = get_method("finetune")(cfg, model, splits, torch.device("cpu"))
    data = method.train_dataset(0)
    assert len(data) == len(splits.train)  # the same steps per epoch as the full fine-tune
    rows = list(data.indices)  # the row behind each item
    assert len(set(rows)) == 10 and max(rows) < len(splits.train)
    labels = [int(data[i][1]) for i in range(len(data))]
    assert labels == [int(splits.train[r][1]) for r in rows]
    with pytest.raises(Exception, match="label_rows"):
        TrainConfig(method="abrl", label_rows=10)
