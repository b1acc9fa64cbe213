"""Per-step records of ABRL's inner solve and linear solve, summarised once per epoch.

The implicit hypergradient is exact only at a stationary head with H v = g solved; these records
say, with numbers, how often a run met those assumptions (docs/method.md decision 3, amended).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .head_refit import extract_features
from .hypergrad import head_logits, inner_residual
from .newton import newton_head

# A head whose gradient norm is above the ridge μ is not stationary in any useful sense: there
# the implicit feature gradient was 14-43× too large on real features (docs/method.md).
NONSTATIONARY_RATIO = 1.0

# CG stops on its recursive residual; the true residual recomputed in float32 lands a little above
# rtol on converged solves (seen: 1.16e-4 at rtol 1e-4). Only a miss by more than this factor
# is a failed solve.
CG_SLACK = 2.0

_KEYS = ("inner_residual_over_ridge", "newton_iterations", "cg_iterations", "cg_residual",
         "memory_staleness")  # fmt: skip


class StepRecords:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.rows: list[dict[str, float]] = []

    def add(self, out: dict[str, Any]) -> None:
        self.rows.append({k: float(out[k]) for k in _KEYS if k in out})

    def summarise(self) -> tuple[dict[str, Any], list[str]]:
        """(median/max of each record and the failure fractions, warnings); then reset."""
        rows, self.rows = self.rows, []
        if not rows:
            return {}, []
        summary: dict[str, Any] = {"steps": len(rows)}
        for key in _KEYS:
            values = [r[key] for r in rows if key in r]
            if values:
                summary[key] = {"median": statistics.median(values), "max": max(values)}
        ratios = [r["inner_residual_over_ridge"] for r in rows]
        off = sum(r > NONSTATIONARY_RATIO for r in ratios)
        summary["nonstationary_fraction"] = off / len(rows)
        cg = [r["cg_residual"] for r in rows if "cg_residual" in r]
        missed = sum(r > CG_SLACK * self.cfg.cg_rtol for r in cg)
        if cg:
            summary["solve_unconverged_fraction"] = missed / len(cg)
        return {"hypergrad_diagnostics": summary}, self._warnings(summary, off, missed, len(cg))

    def _warnings(self, s: dict[str, Any], off: int, missed: int, solves: int) -> list[str]:
        if self.cfg.hypergrad != "implicit":
            return []  # only the implicit formula assumes a stationary head and a solved v
        n, warnings = s["steps"], []
        # memory and amortized follow the split's optimum by design and are judged by the
        # split-level diagnostics, not by a batch's stationarity
        if off and self.cfg.inner_problem == "batch":
            r = s["inner_residual_over_ridge"]
            warnings.append(
                f"the implicit step ran at a non-stationary head in {off}/{n} steps "
                f"(||grad L_in|| / ridge: median {r['median']:.3g}, max {r['max']:.3g}; "
                f"stationary means <= {self.cfg.inner_tol:g}); its hypergradient is biased there. "
                "Use --inner-solve newton (the default) or more --inner-steps"
            )
        if missed:
            r = s["cg_residual"]
            warnings.append(
                f"H v = g was not solved to rtol {self.cfg.cg_rtol:g} (x{CG_SLACK:g} slack) in "
                f"{missed}/{solves} steps "
                f"(final relative residual: median {r['median']:.3g}, max {r['max']:.3g}); "
                "raise cg_max_iter or use --solver exact on small heads"
            )
        return warnings


SPLIT_SAMPLE_SEED = 12345  # the same rows every epoch and for every estimator


def split_sample(n: int, rows: int) -> np.ndarray:
    """The fixed sample of the split-level diagnostics: the same rows every epoch and estimator."""
    return np.random.default_rng(SPLIT_SAMPLE_SEED).permutation(n)[: min(rows, n)]


@torch.no_grad()
def split_diagnostics(method: Any, dataset: Any, rows: int) -> dict[str, float]:
    """The persistent head against the training split's problem, not the batch's.

    On a fixed sample of ``rows`` training rows (all of them when fewer), encoded by the current
    encoder in eval mode and centred as the head's features are: ``||∇φ L_in(φ_t)|| / μ`` on the
    sample, the relative distance ``||φ_t − φ*|| / ||φ*||`` to the sample's own optimum (Newton
    from φ_t), and both heads' top-1 on the sample. A head solved on one batch is stationary there
    and far from stationary here: this is where that shows.
    """
    z, y = encode_rows(method, dataset, split_sample(len(dataset), rows))
    return head_against(method, z, y)


@torch.no_grad()
def head_against(method: Any, z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """split_diagnostics on features already encoded (eval mode, not yet centred)."""
    cfg = method.cfg
    z = z - method.feature_mean
    W, b = method.W, method.b
    residual = inner_residual(z, y, W, b, cfg.ridge)
    best = newton_head(z, y, W, b, cfg.ridge, cfg.inner_tol * cfg.ridge, 20)
    gap = torch.cat([(W - best.W).flatten(), b - best.b]).norm()
    scale = torch.cat([best.W.flatten(), best.b]).norm().clamp_min(1e-12)
    return {
        "rows": int(len(y)),
        "residual_over_ridge": residual / cfg.ridge,
        "distance_to_optimum": (gap / scale).item(),
        "head_top1": 100.0 * (head_logits(z, W, b).argmax(1) == y).float().mean().item(),
        "optimum_top1": 100.0
        * (head_logits(z, best.W, best.b).argmax(1) == y).float().mean().item(),
        "optimum_residual_over_ridge": best.residual / cfg.ridge,
    }


def encode_rows(method: Any, dataset: Any, rows: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (the head's dtype, on its device) and labels of ``dataset``'s ``rows``, encoder
    in eval mode (head_refit.extract_features)."""
    loader = DataLoader(Subset(dataset, list(rows)), batch_size=256)
    z, y = extract_features(method.model, loader, method.device)
    return z.to(method.device, method.W.dtype), y.to(method.device)
