"""``reproduce``: run the paper's grid, measure its other claims, write the report.

Rerunning is resuming: with ``resume`` every finished run of the grid is reused, an unfinished
one is resumed exactly, a missing one is trained, measurements taken with the same parameters are
reused, and the report is rewritten from all of them. Without ``resume`` or ``force`` an ``out``
that already holds a reproduction is refused, as ``abrl train`` refuses a non-empty run directory.
"""

from __future__ import annotations

import datetime
import math
import shutil
from typing import Any

import numpy as np

from abrl_deploy import __version__
from abrl_deploy.artifacts import CARD
from abrl_deploy.errors import ConfigError
from abrl_deploy.progress import GridProgress, quiet
from abrl_deploy.training.config import METHOD_FIELDS
from abrl_deploy.training.costs import StepShape

from . import claims, measure, paper
from .executors import run_cells
from .plan import BASELINES, HEADS, ReproduceSpec, plan_grid
from .runner import CellResult, build_config, read_curves

SCHEMA = "abrl.reproduce"


def reproduce(spec: ReproduceSpec, progress: GridProgress = quiet) -> dict[str, Any]:
    """Train or reuse every run of the grid, measure the claims and write the report."""
    _check_out(spec)
    cells = plan_grid(spec)  # resolves the preset files: fail before any training
    spec.out.mkdir(parents=True, exist_ok=True)
    if spec.force:
        shutil.rmtree(spec.out / "measurements", ignore_errors=True)

    def on_cell(cell, done: int, what: str) -> None:
        progress(f"{cell.name}: {what}", done, len(cells))

    grid = run_cells(cells, spec, on_cell)
    results = grid.results
    if not results:
        first = next(iter(grid.failed.items()), None)
        why = f" ({len(grid.failed)} failed; {first[0]}: {first[1]})" if first else ""
        raise ConfigError(f"{spec.out} holds no finished run of this grid{why}; nothing to report")
    report = _report(spec, results)
    done = {r.cell for r in results}
    report["missing"] = [c.name for c in cells if c not in done]
    report["failed"] = grid.failed  # {cell: its one-line error}; these are in missing too
    progress("measuring the claims", len(cells), len(cells))
    report["claims"] = _claims(spec, results, progress)
    from .report import write_all

    report["files"] = write_all(report, spec.out)
    return report


def _check_out(spec: ReproduceSpec) -> None:
    ours = [p for p in (spec.out / "reproduce.json", spec.out / "runs") if p.exists()]
    if ours and not (spec.resume or spec.force or spec.report_only):
        raise ConfigError(
            f"{spec.out} already holds a reproduction ({', '.join(str(p) for p in ours)}); pass "
            "--resume to reuse its finished runs, resume the unfinished ones and rewrite the "
            "report, or --force to retrain everything"
        )


def _stats(values: dict[int, float]) -> dict[str, Any]:
    x = np.asarray(list(values.values()), np.float64)
    return {"seeds": {str(s): v for s, v in values.items()}, "n": len(x),
            "mean": float(x.mean()) if len(x) else math.nan,
            "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan}  # fmt: skip


def _top1(results: list[CellResult], dataset: str, variant: str, head: str = "refit"):
    """Test top-1 of ``head`` ("refit" or "own") per seed: the same head for every method,
    whichever head a run saved (a run without that record, from an older abrl, is left out)."""
    return {r.cell.seed: float(r.head[f"{head}_head"]["top1"]) for r in results
            if r.cell.dataset == dataset and r.cell.variant == variant
            and f"{head}_head" in r.head}  # fmt: skip


def _tables(spec: ReproduceSpec, results: list[CellResult], head: str) -> dict[str, Any]:
    datasets, abl = spec.dataset_list, spec.ablation_dataset
    variants1, variants2 = spec.tables
    table1 = {v: {d: _stats(_top1(results, d, v, head)) | {"paper": paper.TABLE1[v].get(d)}
                  for d in datasets} for v in variants1}  # fmt: skip
    table2 = {v: _stats(_top1(results, abl, v, head)) | {"paper": paper.TABLE2[v]}
              for v in variants2}  # fmt: skip
    return {"table1": table1, "table2": table2}


def _report(spec: ReproduceSpec, results: list[CellResult]) -> dict[str, Any]:
    datasets = spec.dataset_list
    abl = spec.ablation_dataset
    first = next(r.cell for r in results)
    return {
        "schema": SCHEMA, "schema_version": 1, "abrl_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "preset": spec.preset, "datasets": list(datasets), "seeds": list(spec.seeds),
        "ablation_dataset": abl, "paper_ablation_dataset": paper.TABLE2_DATASET,
        "config": build_config(first).to_dict() | {"method": "(per variant)", "seed": "(per run)"},
        "overrides": dict(spec.overrides),
        "heads": {h: _tables(spec, results, h) for h in HEADS},
        "runs": [{"run": r.cell.name, "dir": str(r.cell.run_dir), "action": r.action,
                  "test_top1": r.metrics.get("test_top1"),
                  "refit_top1": r.head.get("refit_head", {}).get("top1"),
                  "own_top1": r.head.get("own_head", {}).get("top1"),
                  "saved_head": r.head.get("source"),
                  "train_seconds": r.metrics.get("train_seconds"),
                  "resumed_from_epoch": r.resumed_from_epoch,
                  "curve": [{k: row.get(k) for k in ("epoch", "loss", "test_top1", "val_top1")}
                            for row in read_curves(r.cell.run_dir)]}
                 for r in results],
    }  # fmt: skip


def _claims(
    spec: ReproduceSpec, results: list[CellResult], progress: GridProgress
) -> dict[str, Any]:
    n = len(results)
    out: dict[str, Any] = {"accuracy_gain": _gain_claim(spec, results)}
    abl = spec.ablation_dataset
    runs = {r.cell.variant: r.cell.run_dir for r in results
            if r.cell.seed == spec.seeds[0] and r.cell.dataset == abl}  # fmt: skip
    if spec.latency and {"abrl", "finetune"} <= set(runs):
        progress("claim 2: exporting and benching ABRL against fine-tune", n, n)
        out["latency"] = _latency_claim(spec, runs["abrl"], runs["finetune"])
    if spec.costs and "abrl" in runs:
        cfg = build_config(next(r.cell for r in results if r.cell.variant == "abrl"))
        shape = _shape(cfg, _input_size(runs["abrl"]))
        progress("claim 3: timing ABRL steps with and without the penalty", n, n)
        out["penalty_overhead"] = _overhead_claim(spec, shape, cfg)
        progress("claim 4: saved-for-backward bytes, implicit vs unrolled", n, n)
        out["memory"] = _memory_claim(spec, shape)
    return out


def _gain_claim(spec: ReproduceSpec, results: list[CellResult]) -> dict[str, Any]:
    floor = paper.ACCURACY_GAIN[0]
    rows = []
    for d in spec.dataset_list:
        abrl = _top1(results, d, "abrl")  # the refit head for every method: like for like
        for base in BASELINES:
            theirs = _top1(results, d, base)
            if not theirs:
                continue
            row = claims.accuracy_gain(abrl, theirs, floor=floor, confidence=spec.confidence)
            rows.append({"dataset": d, "baseline": base, **row})
    return {"claim": paper.CLAIMS["accuracy_gain"], "floor_points": floor, "head": "refit",
            "rule": claims.GAIN_RULE.format(conf=spec.confidence, floor=floor),
            "rows": rows, "verdict": claims.overall([r["verdict"] for r in rows])}  # fmt: skip


def _latency_claim(spec: ReproduceSpec, abrl_run, finetune_run) -> dict[str, Any]:
    params = {"model": str(abrl_run), "baseline": str(finetune_run), "batch": 64,
              "seconds": spec.bench_seconds, "claim": paper.LATENCY_REDUCTION}  # fmt: skip
    rec = measure.cached(spec.out, "latency", params, spec.force, lambda: measure.latency(
        abrl_run, finetune_run, data_dir=spec.data_dir, seconds=spec.bench_seconds,
        claim=paper.LATENCY_REDUCTION, confidence=spec.confidence))  # fmt: skip
    bench = rec["result"]
    rows = claims.latency_rows(bench)
    return {"claim": paper.CLAIMS["latency"], "rule": bench["claim"]["rule"],
            "rows": rows, "results": [_lat(r) for r in bench["results"]],
            "skipped": bench["backends"]["skipped"], "cached": rec["cached"],
            "verdict": claims.overall([r["verdict"] for r in rows])}  # fmt: skip


def _lat(r: dict[str, Any]) -> dict[str, Any]:
    lat = r["latency"]
    return {"model": r["model"], "backend": r["backend"], "p50_ms": lat["p50_ms"],
            "p90_ms": lat["p90_ms"], "cv": lat["cv"], "top1": r["accuracy"]["top1"]}  # fmt: skip


# What a timed ABRL step reads of the grid's config: ABRL's own fields but lambda (varied here),
# the outer batch (the step shape's) and the once-an-epoch ones, with the ridge and centring.
# The steps run on fixed batches without a dataset: amortized fits its head on the first batch,
# and memory (whose store needs a split) is timed over that batch alone.
_STEP_FIELDS = sorted(
    METHOD_FIELDS["abrl"] - {"lambda_", "val_batch_size", "split_diagnostic_rows", "head_refresh"}
    | {"ridge", "center_features"}
)


def _overhead_claim(spec: ReproduceSpec, shape: StepShape, cfg) -> dict[str, Any]:
    lambda_ = cfg.lambda_ or 0.01  # a preset without a penalty still gets the claim measured
    fields = {k: getattr(cfg, k) for k in _STEP_FIELDS}
    params = {"shape": shape.__dict__, "lambda": lambda_, "config": fields,
              "rounds": spec.overhead_rounds, "steps": spec.overhead_steps}  # fmt: skip

    def measure_overhead() -> dict[str, Any]:
        return measure.overhead(shape, lambda_, fields, rounds=spec.overhead_rounds,
                                steps=spec.overhead_steps)  # fmt: skip

    rec = measure.cached(spec.out, "overhead", params, spec.force, measure_overhead)
    times = rec["result"]["seconds_per_step"]
    band = (0.0, 2 * paper.PENALTY_OVERHEAD)
    row = claims.penalty_overhead(times["with_penalty"], times["without"], band=band,
                                  confidence=spec.confidence)  # fmt: skip
    return {"claim": paper.CLAIMS["penalty_overhead"], "params": params, "cached": rec["cached"],
            "rule": claims.OVERHEAD_RULE.format(conf=spec.confidence, lo=band[0], hi=band[1]),
            "seconds_per_step": times, **row}  # fmt: skip


def _memory_claim(spec: ReproduceSpec, shape: StepShape) -> dict[str, Any]:
    params = {"shape": shape.__dict__, "ks": list(spec.memory_ks)}
    rec = measure.cached(spec.out, "memory", params, spec.force,
                         lambda: measure.memory(shape, spec.memory_ks))  # fmt: skip
    m = rec["result"]
    row = claims.memory_verdict(m["ks"], m["implicit_mib"], m["unrolled_mib"])
    return {"claim": paper.CLAIMS["memory"], "params": params, "cached": rec["cached"],
            "rule": claims.MEMORY_RULE.format(flat=0.05, grows=0.5), **row}  # fmt: skip


def _input_size(run_dir) -> int:
    import json

    return int(json.loads((run_dir / CARD).read_text())["input_size"])


def _shape(cfg, size: int) -> StepShape:
    """The step the grid's ABRL runs take: their backbone, batches, input size and stem."""
    from abrl_deploy.training.models import resolve_stem
    from abrl_deploy.training.trainer import resolve_device

    return StepShape(backbone=cfg.backbone, batch=cfg.batch_size, val_batch=cfg.outer_batch_size,
                     size=size, stem=resolve_stem(cfg.stem, size),
                     device=resolve_device(cfg.device).type)  # fmt: skip
