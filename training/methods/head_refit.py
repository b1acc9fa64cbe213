"""The final head refit: the convex ridge-logistic problem on all training features."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .. import distributed
from . import hypergrad as hg


@torch.no_grad()
def extract_features(model, loader: DataLoader, device: torch.device):
    """Encoder features of every row of ``loader`` in eval mode, float32 on the CPU."""
    was_training = model.training
    model.eval()
    zs, ys = [], []
    for x, y in loader:
        zs.append(model.forward_features(x.to(device)).float().cpu())
        ys.append(y)
    model.train(was_training)
    return torch.cat(zs), torch.cat(ys)


def refit_head(z, y, W0, b0, ridge: float, max_iter: int = 500):
    """Minimise inner_loss(φ) from the warm start (W0, b0) with L-BFGS in float64.

    Returns (W, b, iterations) as float32 CPU tensors.
    """
    z64, y = z.double(), y.long()
    W = W0.detach().double().cpu().clone().requires_grad_(True)
    b = b0.detach().double().cpu().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [W, b], max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = hg.inner_loss(z64, y, W, b, ridge)
        loss.backward()
        return loss

    opt.step(closure)
    iters = opt.state[opt._params[0]].get("n_iter", 0)
    return W.detach().float(), b.detach().float(), int(iters)


def refit_model_head(model, loader: DataLoader, device: torch.device, cfg) -> dict:
    """Replace ``model.head`` by the ridge-logistic optimum on the features of ``loader``.

    Features are centred on their mean (folded into the bias) as ABRL's head sees them; the
    solve starts from zero so every method gets the identical problem and solver. Under torchrun
    rank 0 solves and hands the head to the others. Returns what the card records of the fit.
    """

    def solve():
        z, y = extract_features(model, loader, device)
        m = z.mean(0) if cfg.center_features else torch.zeros(z.shape[1])
        c = model.num_classes
        W, b, iters = refit_head(z - m, y, torch.zeros(c, z.shape[1]), torch.zeros(c), cfg.ridge)
        residual = hg.inner_residual(z - m, y, W, b, cfg.ridge)
        return W, b - W @ m, iters, residual

    W, b, iters, residual = distributed.on_main(solve)
    with torch.no_grad():
        model.head.weight.copy_(W.to(model.head.weight))
        model.head.bias.copy_(b.to(model.head.bias))
    return {"ridge": cfg.ridge, "rows": len(loader.dataset), "centered": cfg.center_features,
            "iterations": iters, "gradient_norm": residual}  # fmt: skip
