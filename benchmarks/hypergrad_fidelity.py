"""How close is each estimator of ABRL's hypergradient to the split's exact one?

Frozen features of a trained encoder on tiny-imagenet-100 (100 classes): the exact hypergradient
of a draw (64 train rows, 16 validation rows) uses the head solved on all 9,000 training features
and v from H v = g with H over all of them; each estimator gives its own. Per draw, the gradient
with respect to the draw's features (the train rows' cross term as a batch mean, the convention
of every estimator) is compared by cosine and norm ratio; the bias is the cosine between the
encoder-parameter hypergradients averaged over all draws (the mean estimate against the mean
exact one). Estimators:

- batch: the head solved to stationarity on the 64 rows, v on their Hessian (abrl's default);
- memory: every training row's features; the head warm-started from the previous draw and
  advanced by the default budget (1 Newton-CG step of <= 10 CG iterations), v by CG from zero
  (<= 50 iterations, rtol 1e-4), as abrl train does;
- memory, cold: the same budget from a zero head at every draw (what one step's budget buys);
- amortized: SOBA steps of the head and v (ρ_t as abrl train), the head first fitted on the split.

The persistent estimators (memory, amortized) first take --warm-steps steps on draws that are not
measured (benchopt's AmIGO takes 10 warm steps): in training they have taken thousands.

    .venv/bin/python benchmarks/hypergrad_fidelity.py --run runs/transfer/finetune/seed0 \
        [--draws 20] [--out benchmarks/results/hypergrad_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from abrl_deploy import machine
from abrl_deploy.training.checkpoint import load_classifier
from abrl_deploy.training.data import load_dataset
from abrl_deploy.training.methods import amortized
from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.methods.feature_memory import advance_head
from abrl_deploy.training.methods.head_refit import extract_features
from abrl_deploy.training.methods.newton import newton_head

RIDGE = 1e-3


def encode(model, dataset):
    """Eval-mode features (float64) and labels of every row (head_refit.extract_features)."""
    z, y = extract_features(model, DataLoader(dataset, batch_size=256), torch.device("cpu"))
    return y, z.double()


def images(dataset, rows) -> torch.Tensor:
    return torch.stack([dataset[int(i)][0] for i in rows])


def feature_grad(z_tr, y_tr, z_val, y_val, W, b, v):
    """∇ of the implicit surrogate w.r.t. the draw's train and validation features."""
    zt, zv = z_tr.clone().requires_grad_(), z_val.clone().requires_grad_()
    hg.implicit_surrogate(zt, y_tr, zv, y_val, W, b, v).backward()
    return torch.cat([zt.grad.flatten(), zv.grad.flatten()])


def cosine(a, b) -> float:
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a trained run on tiny-imagenet-100")
    p.add_argument("--data-dir", required=True, help="tiny-imagenet-100 in its official layout")
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--warm-steps", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/hypergrad_fidelity.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    model, card = load_classifier(args.run)
    cfg = card.config
    splits = load_dataset(card.dataset, args.data_dir, val_fraction=cfg["val_fraction"],
                          seed=cfg["seed"], image_size=card.input_size, limit=cfg.get("limit"),
                          augment=False, cache="auto")  # fmt: skip
    y_tr, Z = encode(model, splits.train_eval)
    y_val, Zv = encode(model, splits.val)
    mean = Z.mean(0)
    Z, Zv = Z - mean, Zv - mean
    C, D = card.num_classes, Z.shape[1]
    print(f"features: {tuple(Z.shape)} train, {tuple(Zv.shape)} validation", flush=True)
    zeros = (torch.zeros(C, D).double(), torch.zeros(C).double())
    best = newton_head(Z, y_tr, *zeros, RIDGE, 1e-9, 60)
    probs = torch.softmax(hg.head_logits(Z, best.W, best.b), 1)
    print(f"split head: residual {best.residual:.2e} in {best.iterations} Newton steps", flush=True)
    rng = np.random.default_rng(0)
    params = [q for q in model.encoder.parameters()]
    names = ("batch", "memory", "memory, cold", "amortized")
    per_draw = {n: {"cos": [], "norm": []} for n in names}
    theta_sum = {n: None for n in (*names, "exact")}
    warm = {"head": zeros}
    exact_residuals: list[float] = []
    soba = {"W": best.W.clone(), "b": best.b.clone(), "v": zeros, "t": 0}  # fitted on the split
    for d in range(-args.warm_steps, args.draws):
        rows = torch.as_tensor(rng.choice(len(Z), 64, replace=False))
        vrows = torch.as_tensor(rng.choice(len(Zv), 16, replace=False))
        zb, yb, zvb, yvb = Z[rows], y_tr[rows], Zv[vrows], y_val[vrows]
        if d < 0:  # warm steps: the persistent estimators move, nothing is measured
            W, b, _ = advance_head(Z, y_tr, *warm["head"], RIDGE, 1, 10, tol=1e-3 * RIDGE)
            warm = {"head": (W, b)}
            _soba_step(soba, zb, yb, zvb, yvb)
            continue
        g = hg.ce_grad(zvb, yvb, best.W, best.b)
        # rtol 1e-6: the feature hypergradient's direction settles by ~1e-2 (cosine 1.000)
        exact = hg.solve_cg(Z, probs, g, RIDGE, rtol=1e-6, max_iter=1000)
        v_star = exact.v
        exact_residuals.append(exact.residual)
        grads = {"exact": feature_grad(zb, yb, zvb, yvb, best.W, best.b, v_star)}
        # batch: stationary on the batch
        hb = newton_head(zb, yb, *zeros, RIDGE, 1e-3 * RIDGE, 50)
        pb = torch.softmax(hg.head_logits(zb, hb.W, hb.b), 1)
        vb = hg.solve_cg(zb, pb, hg.ce_grad(zvb, yvb, hb.W, hb.b), RIDGE, rtol=1e-4).v
        grads["batch"] = feature_grad(zb, yb, zvb, yvb, hb.W, hb.b, vb)
        for name, start in (("memory", warm), ("memory, cold", {"head": zeros})):
            W, b, _ = advance_head(Z, y_tr, *start["head"], RIDGE, 1, 10, tol=1e-3 * RIDGE)
            pm = torch.softmax(hg.head_logits(Z, W, b), 1)
            g_m = hg.ce_grad(zvb, yvb, W, b)
            v = hg.solve_cg(Z, pm, g_m, RIDGE, rtol=1e-4, max_iter=50).v
            if name == "memory":
                warm = {"head": (W, b)}
            grads[name] = feature_grad(zb, yb, zvb, yvb, W, b, v)
        grads["amortized"] = feature_grad(zb, yb, zvb, yvb, soba["W"], soba["b"], soba["v"])
        _soba_step(soba, zb, yb, zvb, yvb)
        for name in names:
            per_draw[name]["cos"].append(cosine(grads[name], grads["exact"]))
            per_draw[name]["norm"].append((grads[name].norm() / grads["exact"].norm()).item())
        # the encoder-parameter hypergradient of each: J^T (feature gradient), summed over draws
        x = torch.cat([images(splits.train_eval, rows), images(splits.val, vrows)])
        z = model.forward_features(x).double()
        for name, gz in grads.items():
            gt = torch.autograd.grad(z, params, gz.view(z.shape), retain_graph=True)
            flat = torch.cat([t.flatten() for t in gt])
            theta_sum[name] = flat if theta_sum[name] is None else theta_sum[name] + flat
        print(f"draw {d + 1}: " + ", ".join(f"{n} {per_draw[n]['cos'][-1]:.3f}" for n in names),
              flush=True)  # fmt: skip
    rows_out = []
    for name in names:
        rows_out.append({
            "estimator": name,
            "bias_cosine": round(cosine(theta_sum[name], theta_sum["exact"]), 4),
            "mean_cosine": round(statistics.fmean(per_draw[name]["cos"]), 4),
            "median_cosine": round(statistics.median(per_draw[name]["cos"]), 4),
            "mean_norm_ratio": round(statistics.fmean(per_draw[name]["norm"]), 4),
        })  # fmt: skip
    report = {
        "cpu": machine.cpu_model(), "cpu_flags": machine.cpu_flags(), "run": str(args.run),
        "card": {"method": card.method, "dataset": card.dataset,
                 "classes": card.num_classes, "test_top1": card.metrics.get("test_top1")},
        "features": list(Z.shape), "ridge": RIDGE, "draws": args.draws,
        "warm_steps": args.warm_steps,
        "exact_v_relative_residual_max": max(exact_residuals),
        "split_head_residual": best.residual, "rows": rows_out,
        "targets_for_the_default": {"bias_cosine": 0.95, "mean_cosine": 0.9},
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for r in rows_out:
        print(r)


def _soba_step(state, zb, yb, zvb, yvb) -> None:
    rho = amortized.step_size(0.5, zb, RIDGE, state["t"])
    state["W"], state["b"], state["v"] = amortized.soba_step(
        zb, yb, zvb, yvb, state["W"], state["b"], state["v"], RIDGE, rho
    )
    state["t"] += 1


if __name__ == "__main__":
    main()
