"""ABRL: the encoder follows the implicit hypergradient of a persistent ridge-logistic head.

One encoder forward on [train; val] rows, an inner solve of the head on the detached train
features (damped Newton to stationarity by default, or the paper's K plain steps), a linear solve
H v = ∇_φ CE_val from zero, and one fused backward of the surrogate (docs/method.md decisions 1-9).
The head lives here, not in the optimizer. Every step records how far the head was from
stationarity and how well H v = g was solved; each epoch summarises them and warns when the
implicit formula was used outside its assumptions.

Under torchrun every rank gathers the features and labels of all ranks and solves the same head
system on them (decision 10): its surrogate is the full-batch one, and the gradients that reach
each rank's own rows add up, over ranks, to the hypergradient of one process on the combined batch.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from abrl_deploy.errors import TrainingError

from .. import distributed
from . import amortized
from . import hypergrad as hg
from .base import Method, StepResult
from .diagnostics import StepRecords, encode_rows, head_against, split_diagnostics, split_sample
from .feature_memory import FeatureMemory, advance_head
from .newton import newton_head
from .penalty import cov_penalty
from .registry import register_method


@register_method("abrl")
class AbrlMethod(Method):
    needs_val_batch = True
    sync_batchnorm = True  # the head system and the penalty are built on the batch of all ranks
    own_head_kind = "the persistent head of the inner loop"

    def __init__(self, cfg, model, splits, device) -> None:
        super().__init__(cfg, model, splits, device)
        c, d = model.num_classes, model.feature_dim
        # The head maths run in fp32 even under AMP (decision 9); float64 models stay float64.
        dtype = torch.float64 if model.head.weight.dtype == torch.float64 else torch.float32
        # The head persists across steps (warm start, decision 2).
        self.W = torch.zeros(c, d, device=device, dtype=dtype)
        self.b = torch.zeros(c, device=device, dtype=dtype)
        self.feature_mean = torch.zeros(d, device=device, dtype=dtype)
        self.steps_done = 0
        self.records = StepRecords(cfg)
        self.memory: FeatureMemory | None = None
        self.last_split: dict[str, Any] | None = None  # the latest split-level diagnostics
        self.v: tuple[torch.Tensor, torch.Tensor] | None = None  # amortized: v persists
        self.refresh: dict[str, Any] | None = None  # memory: this epoch's end-of-epoch refresh
        self.epoch_split: dict[str, Any] | None = None  # split diagnostics taken by the refresh
        self.memory_fill: dict[str, Any] | None = None  # the fill before the first step
        if cfg.inner_problem == "memory" and splits is not None:
            self.memory = FeatureMemory(len(splits.train), d, dtype, device)

    def train_dataset(self, epoch: int):
        """With the memory, batches carry their rows' positions: the memory's index."""
        if self.memory is None:
            return self.splits.train
        return IndexedRows(self.splits.train)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.encoder.parameters())

    def step(self, batch, val_batch) -> StepResult:
        (x_tr, y_tr, *index), (x_val, y_val) = batch, val_batch
        if self.memory is not None and not bool(self.memory.filled.any()):
            # before the first step (a resume loads the memory): every row of the initial
            # encoder and the head solved on them, so the first steps track the split's optimum
            # instead of a 64-row problem's (from a zero head, 5 Newton steps on a separable
            # batch left it far from stationary and the implicit step, scaled by 1/ridge there,
            # broke a pretrained encoder in 5 steps: gradient norm 1,650 against batch's 12)
            self.memory_fill = self._refresh_head(diagnose=False)
        with self.autocast():
            z = self.model.forward_features(torch.cat([x_tr, x_val]))
        z = z.to(self.W.dtype)
        n = len(x_tr)
        own = distributed.rank_rows(n)  # this rank's rows among the gathered ones
        # Averaging per-rank hypergradients would be biased: gather rows, solve one system.
        z_tr, z_val = distributed.gather_rows(z[:n]), distributed.gather_rows(z[n:])
        y_tr, y_val = distributed.gather_rows(y_tr), distributed.gather_rows(y_val)
        staleness = None
        if self.memory is not None:
            if not index:
                raise TrainingError("--inner-problem memory needs the rows' positions in batches")
            rows = distributed.gather_rows(index[0].to(self.device))
            staleness = self.memory.update(rows, z_tr, y_tr)
        if self.cfg.inner_problem == "amortized" and self.v is None:
            self._fit_on_split(z_tr.detach(), y_tr)  # once, before the first step (not on resume)
        m = self._center(z_tr)
        zc_tr, zc_val = z_tr - m, z_val - m
        inner = self._inner_rows(zc_tr, y_tr, m)  # once a step: the memory's are 18 MB
        # α: the inner step size of the head (K plain steps, Neumann), not the outer cfg.lr
        inner_alpha = self._inner_alpha(inner[0])
        # what backward() differentiates: L_out through the K steps (unrolled), or the implicit
        # surrogate, whose gradient is the hypergradient (its value means nothing)
        if self.cfg.hypergrad == "unrolled":
            objective, out = self._unrolled(zc_tr, y_tr, zc_val, y_val, inner_alpha)
        else:
            objective, out = self._implicit(zc_tr, y_tr, zc_val, y_val, inner_alpha, inner)
        if self.cfg.lambda_ > 0:
            pen = cov_penalty(z_tr, normalize=self.cfg.penalty_norm)
            objective = objective + self.cfg.lambda_ * pen
        else:  # logged for the ablation, kept out of the graph
            pen = cov_penalty(z_tr.detach(), normalize=self.cfg.penalty_norm)
        objective.backward()
        self.steps_done += 1
        with torch.no_grad():
            logits = hg.head_logits(zc_tr[own], self.W, self.b)  # for this rank's y
        out["penalty"] = pen.item()
        # Log L_out, never the surrogate: S's value means nothing (decision 5).
        loss = out["outer_loss"] = out["val_ce"] + self.cfg.lambda_ * pen.item()
        out["inner_residual_over_ridge"] = out["inner_residual"] / self.cfg.ridge
        if inner_alpha is not None:
            out["inner_lr"] = inner_alpha  # logged under the flag's name, --inner-lr
        if staleness is not None:
            out["memory_staleness"] = staleness
        self.records.add(out)
        if not math.isfinite(loss):
            raise TrainingError(
                f"ABRL diverged at step {self.steps_done} (loss {loss}); lower --lr or "
                "add --grad-clip (with --inner-problem memory: or use amortized, the default); "
                "with --inner-solve steps: lower --inner-lr or use --inner-lr auto"
            )
        return StepResult(loss, logits.detach(), out)

    def _center(self, z_tr: torch.Tensor) -> torch.Tensor:
        """Subtract the detached batch mean: it cut CG from ~200 to ~30 iterations (decision 6).
        With the memory, its mean: the centre of the problem the head solves."""
        if not self.cfg.center_features:
            return torch.zeros_like(self.feature_mean)
        if self.memory is not None:
            m = self.memory.rows()[0].mean(0)
            self.feature_mean.copy_(m)
            return m
        if self.cfg.inner_problem == "amortized":  # a persistent head needs a steady centre
            self.feature_mean.lerp_(z_tr.detach().mean(0), 0.1)
            return self.feature_mean.clone()
        m = z_tr.detach().mean(0)
        if self.steps_done == 0:
            self.feature_mean.copy_(m)
        else:
            self.feature_mean.lerp_(m, 0.1)  # deployed head's centre, like BatchNorm's running mean
        return m

    def _inner_alpha(self, z: torch.Tensor) -> float | None:
        if self.cfg.inner_solve == "newton":
            return None
        bound = hg.bohning_bound(z, self.cfg.ridge)
        if self.cfg.inner_lr == "auto":
            return 1.0 / bound
        hg.validate_inner_lr(float(self.cfg.inner_lr), bound)
        return float(self.cfg.inner_lr)

    def _inner_rows(self, zc_tr, y_tr, m) -> tuple[torch.Tensor, torch.Tensor]:
        """The centred, detached rows of the inner problem: the memory's, or the batch's."""
        if self.memory is None:
            return zc_tr.detach(), y_tr
        z, y = self.memory.rows()
        return z - m, y

    def _solve_head(self, zd: torch.Tensor, y_tr: torch.Tensor, alpha: float | None) -> dict:
        """Move the persistent head towards argmin L_in on the inner rows: solved to stationarity
        on a batch, or a budget of Newton-CG iterations on the memory (it follows a slowly
        moving optimum; the split-level diagnostics say how close it stays)."""
        cfg = self.cfg
        if cfg.inner_solve == "newton" and self.memory is not None:
            self.W, self.b, taken = advance_head(
                zd, y_tr, self.W, self.b, cfg.ridge, cfg.memory_newton_steps,
                cfg.memory_cg_iters, tol=cfg.inner_tol * cfg.ridge,
            )  # fmt: skip
            residual = hg.inner_residual(zd, y_tr, self.W, self.b, cfg.ridge)
            return {"inner_residual": residual, "newton_iterations": taken}
        if cfg.inner_solve == "newton":
            tol = cfg.inner_tol * cfg.ridge
            res = newton_head(zd, y_tr, self.W, self.b, cfg.ridge, tol, cfg.inner_max_iter)
            self.W, self.b = res.W, res.b
            return {"inner_residual": res.residual, "newton_iterations": res.iterations}
        self.W, self.b = hg.inner_steps(zd, y_tr, self.W, self.b, cfg.ridge, alpha, cfg.inner_steps)
        return {"inner_residual": hg.inner_residual(zd, y_tr, self.W, self.b, cfg.ridge)}

    def _solve_on(self, z: torch.Tensor, y: torch.Tensor):
        """Centre on ``z``'s mean (the head's new centre) and solve the head on ``z`` by Newton from
        its warm start, to inner_tol × ridge or inner_max_iter."""
        cfg = self.cfg
        m = z.mean(0) if cfg.center_features else torch.zeros_like(self.feature_mean)
        self.feature_mean.copy_(m)
        fit = newton_head(z - m, y, self.W, self.b, cfg.ridge, cfg.inner_tol * cfg.ridge,
                          cfg.inner_max_iter)  # fmt: skip
        self.W, self.b = fit.W, fit.b
        return fit

    def _fit_on_split(self, z_tr=None, y_tr=None) -> None:
        """amortized: φ fitted by Newton on the whole split's features of the initial encoder.
        Without a dataset (step timing on synthetic batches, training/costs.py) the first batch
        stands in for the split."""
        if self.splits is not None:
            self.memory_fill = self._refresh_head(diagnose=False)
        else:
            self._solve_on(z_tr, y_tr)
        self.v = (torch.zeros_like(self.W), torch.zeros_like(self.b))

    def _amortized(self, zc_tr, y_tr, zc_val, y_val) -> tuple[torch.Tensor, dict[str, Any]]:
        """The encoder's step at the current φ and v, then one stochastic step of each."""
        cfg = self.cfg
        v = self.v if cfg.hypergrad == "implicit" else tuple(torch.zeros_like(t) for t in self.v)
        surrogate = hg.implicit_surrogate(zc_tr, y_tr, zc_val, y_val, self.W, self.b, v)
        out: dict[str, Any] = {}
        with torch.no_grad():
            out["val_ce"] = F.cross_entropy(hg.head_logits(zc_val, self.W, self.b), y_val).item()
        rho = amortized.step_size(cfg.amortized_lr, zc_tr.detach(), cfg.ridge, self.steps_done)
        self.W, self.b, self.v = amortized.soba_step(
            zc_tr, y_tr, zc_val, y_val, self.W, self.b, self.v, cfg.ridge, rho
        )
        out["inner_residual"] = hg.inner_residual(zc_tr.detach(), y_tr, self.W, self.b, cfg.ridge)
        out["amortized_step"] = rho
        return surrogate, out

    def _implicit(
        self, zc_tr, y_tr, zc_val, y_val, alpha: float | None, inner
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg = self.cfg
        if cfg.inner_problem == "amortized":
            return self._amortized(zc_tr, y_tr, zc_val, y_val)
        zd, yd = inner  # the centred, detached rows of the inner problem (_inner_rows)
        out: dict[str, Any] = self._solve_head(zd, yd, alpha)
        if cfg.hypergrad == "implicit":
            with torch.no_grad():
                probs = torch.softmax(hg.head_logits(zd, self.W, self.b), dim=1)
                g = hg.ce_grad(zc_val.detach(), y_val, self.W, self.b)
            sol = self._solve(zd, probs, g, alpha)
            out.update(cg_iterations=sol.iterations, cg_residual=sol.residual)
            v = sol.v
        else:  # first-order: v = 0, only the direct validation path
            v = (torch.zeros_like(self.W), torch.zeros_like(self.b))
        surrogate = hg.implicit_surrogate(zc_tr, y_tr, zc_val, y_val, self.W, self.b, v)
        with torch.no_grad():
            out["val_ce"] = F.cross_entropy(hg.head_logits(zc_val, self.W, self.b), y_val).item()
        return surrogate, out

    def _solve(self, z, probs, g, alpha: float | None) -> hg.SolveResult:
        """H v = g. CG starts from zero: the previous batch's v started it at relative residual
        6.6 (median) and left it unconverged at the cap (docs/method.md decision 6, amended)."""
        cfg = self.cfg
        if cfg.solver == "cg":
            return hg.solve_cg(z, probs, g, cfg.ridge, rtol=cfg.cg_rtol, max_iter=cfg.cg_max_iter)
        if cfg.solver == "exact":
            return hg.solve_exact(z, probs, g, cfg.ridge)
        alpha = alpha if alpha is not None else 1.0 / hg.bohning_bound(z, cfg.ridge)
        return hg.solve_neumann(z, probs, g, cfg.ridge, alpha, cfg.cg_max_iter)

    def _unrolled(self, zc_tr, y_tr, zc_val, y_val, alpha: float) -> tuple[torch.Tensor, dict]:
        """Differentiate through the K head steps (the memory-hungry ablation)."""
        inner_steps = self.cfg.inner_steps
        W, b = hg.unrolled_head(
            [zc_tr] * inner_steps, [y_tr] * inner_steps, self.W, self.b, self.cfg.ridge, alpha
        )
        objective = F.cross_entropy(hg.head_logits(zc_val, W, b), y_val)
        self.W, self.b = W.detach(), b.detach()
        residual = hg.inner_residual(zc_tr.detach(), y_tr, self.W, self.b, self.cfg.ridge)
        return objective, {"val_ce": objective.item(), "inner_residual": residual}

    @torch.no_grad()
    def sync_head(self) -> None:
        """Fold the centring into the bias: head(z) = W (z − m) + b = W z + (b − W m)."""
        self.model.head.weight.copy_(self.W)
        self.model.head.bias.copy_(self.b - self.W @ self.feature_mean)

    def finalize(self, train_eval_loader, evaluate) -> dict[str, Any]:
        """Both heads, plus which inner problem the head solved and how far it was from the
        training split's optimum at the last epoch (the card's record of the estimator)."""
        head = super().finalize(train_eval_loader, evaluate)
        head["inner_problem"] = self.cfg.inner_problem
        if self.cfg.head_refresh and self.cfg.inner_problem in ("memory", "amortized"):
            head["own_head_kind"] = ("the inner loop's head, re-solved on the training split's "
                                     "features at the last epoch's end")  # fmt: skip
        if self.last_split is not None:
            head["split_diagnostics"] = self.last_split
        return head

    def state_dict(self) -> dict[str, Any]:
        state = {"W": self.W, "b": self.b, "feature_mean": self.feature_mean}
        state["steps_done"] = self.steps_done
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        if self.last_split is not None:  # so a run resumed at its end writes the same card
            state["last_split"] = self.last_split
        if self.v is not None:
            state["v"] = {"W": self.v[0], "b": self.v[1]}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.W, self.b = state["W"].to(self.device), state["b"].to(self.device)
        self.feature_mean = state["feature_mean"].to(self.device)
        self.steps_done = int(state["steps_done"])
        if self.memory is not None and "memory" in state:
            self.memory.load_state_dict(state["memory"])
        self.last_split = state.get("last_split")
        if "v" in state:
            self.v = (state["v"]["W"].to(self.device), state["v"]["b"].to(self.device))

    @torch.no_grad()
    def end_epoch(self) -> None:
        """memory and amortized (``head_refresh``): re-encode every training row in eval mode
        (the features the deployed model computes) and solve the head on them from its warm
        start, to inner_tol × ridge; the memory takes the fresh features.

        The head then is φ*(θ) of the training split on the epoch's final encoder: the paper's
        inner problem, solved. Without it the tracked head lagged the moving optimum (from scratch
        a row's stored features were 61% away from its fresh ones one epoch later; own head 47%
        beside the refit's 92%). The split-level diagnostics are taken on the fresh features
        *before* the re-solve, so they say how well the per-step updates tracked the optimum
        during the epoch. Cost: one eval-mode pass over the training split and one warm Newton
        solve per epoch; the 2,000-row encoding of the diagnostics is saved.
        """
        self.refresh = self.epoch_split = None
        if self.cfg.inner_problem in ("memory", "amortized") and self.cfg.head_refresh:
            self.refresh = self._refresh_head(diagnose=True)

    def _refresh_head(self, diagnose: bool) -> dict[str, Any]:
        """Encode every training row in eval mode (into the memory, if any) and solve the head
        on them from its warm start (Newton, to inner_tol × ridge or inner_max_iter); with
        ``diagnose``, take the split-level diagnostics of the head as it stood first."""
        cfg, data, start = self.cfg, self.splits.train_eval, time.perf_counter()
        z, y = encode_rows(self, data, range(len(data)))
        if diagnose and cfg.split_diagnostic_rows:
            pick = torch.as_tensor(split_sample(len(data), cfg.split_diagnostic_rows))
            self.epoch_split = head_against(self, z[pick.to(z.device)], y[pick.to(y.device)])
        staleness = None
        if self.memory is not None:
            staleness = self.memory.update(torch.arange(len(data), device=self.device), z, y)
        fit = self._solve_on(z, y)
        record = {
            "rows": len(data),
            "newton_iterations": fit.iterations,
            "residual_over_ridge": fit.residual / cfg.ridge,
            "seconds": round(time.perf_counter() - start, 3),
        }
        if self.memory is not None:
            record["staleness_median"] = staleness
        return record

    def epoch_diagnostics(self) -> tuple[dict[str, Any], list[str]]:
        summary, warnings = self.records.summarise()
        if self.refresh is not None:
            summary.setdefault("hypergrad_diagnostics", {})["head_refresh"] = self.refresh
        if self.memory_fill is not None:
            summary.setdefault("hypergrad_diagnostics", {})["memory_fill"] = self.memory_fill
            self.memory_fill = None
        if self.epoch_split is not None:
            split = self.epoch_split
        elif self.cfg.split_diagnostic_rows and self.splits is not None:
            split = split_diagnostics(self, self.splits.train_eval, self.cfg.split_diagnostic_rows)
        else:
            split = None
        if split is not None:
            summary.setdefault("hypergrad_diagnostics", {})["split"] = split
            self.last_split = split
            if not all(math.isfinite(v) for v in split.values()):
                warnings.append(
                    "the split-level diagnostics are not finite: the encoder's eval-mode "
                    "features or the head diverged; lower --lr or add --grad-clip"
                )
        if self.memory is not None:
            summary.setdefault("hypergrad_diagnostics", {})["memory_mb"] = round(
                self.memory.nbytes / 2**20, 2
            )
        return summary, warnings


class IndexedRows(torch.utils.data.Dataset):
    """``(image, label, position)``: a dataset's rows with their positions (the memory's index)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return x, y, i
