"""The final head refit: the convex ridge-logistic problem on all training features."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

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
