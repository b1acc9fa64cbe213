"""Measurements behind claims 2-4, each cached in ``<out>/measurements/<name>.json`` together with
the parameters it was taken with: a rerun with ``--resume`` reuses a measurement taken with the
same parameters, ``--force`` takes it again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.bench.protocol import Protocol, Timing, measure_interleaved
from abrl_deploy.training.costs import StepShape, memory_in_k, stepper

Note = Callable[[str], None]


def cached(
    out: Path, name: str, params: dict[str, Any], fresh: bool, measure: Callable[[], Any]
) -> dict[str, Any]:
    """``{"params": ..., "result": ...}`` from the cache when its params match, else measured."""
    path = out / "measurements" / f"{name}.json"
    if not fresh and path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = None
        if isinstance(saved, dict) and saved.get("params") == params:
            return saved | {"cached": True}
    record = {"params": params, "result": measure()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record | {"cached": False}


def latency(
    model_run: Path, baseline_run: Path, *, data_dir: str | None, seconds: float, claim: float,
    confidence: float,
) -> dict[str, Any]:  # fmt: skip
    """``abrl bench RUN --baseline BASE --batch 64`` on every backend that runs here."""
    from abrl_deploy.bench import BenchSpec, Protocol, run_bench
    from abrl_deploy.export.ensure import ensure_onnx

    for run in (model_run, baseline_run):  # exported once, kept for later reruns
        ensure_onnx(run, data_dir=data_dir)
    spec = BenchSpec(
        models=(model_run,), baseline=baseline_run, batch=64, data_dir=data_dir, limit=64,
        protocol=Protocol(warmup=5, min_iters=30, min_seconds=seconds), claim=claim,
        confidence=confidence,
    )  # fmt: skip
    report = run_bench(spec)
    for r in report["results"]:
        r.pop("samples_ms", None)  # thousands of numbers; the cached comparisons keep the CIs
    return report


def overhead(
    shape: StepShape, lambda_: float, fields: dict[str, Any], *, rounds: int, steps: int
) -> dict[str, Any]:
    """Interleaved ABRL steps with the penalty (λ = lambda_) and without (λ = 0); ``fields`` are the
    other ABRL settings of the grid (inner steps, inner lr, solver...)."""
    variants = {
        "with_penalty": ("abrl", {**fields, "lambda_": lambda_}),
        "without": ("abrl", {**fields, "lambda_": 0.0}),
    }
    return {"seconds_per_step": interleaved_step_seconds(variants, shape, rounds=rounds,
                                                         steps=steps)}  # fmt: skip


class _Step:
    """A training step seen as a runner: the bench's interleaved protocol times it."""

    def __init__(self, step: Callable[[], float]):
        self.step = step

    def run_staged(self, _: Any) -> None:
        self.step()


def interleaved_step_seconds(
    variants: dict[str, tuple[str, dict[str, Any]]], shape: StepShape, *, rounds: int, steps: int
) -> dict[str, list[float]]:
    """Median step seconds per round of each variant (name -> (method, config fields)), timed
    by the bench's protocol: a block of ``steps`` steps of each variant per round, the order
    reversed every other round, so drift on a busy machine hits all alike and rounds pair up."""
    runners = {key: _Step(stepper(name, shape, **cfg)) for key, (name, cfg) in variants.items()}
    timings = {key: Timing(load_seconds=0.0, first_call_ms=0.0) for key in runners}
    protocol = Protocol(warmup=1, min_iters=rounds * steps, min_seconds=0.0, block=steps,
                        min_blocks=rounds)  # fmt: skip
    measure_interleaved(runners, dict.fromkeys(runners), timings, protocol, scale_blocks=False)
    return {key: (np.median(t.blocks, axis=1) / 1000).tolist() for key, t in timings.items()}


def memory(shape: StepShape, inner_steps: tuple[int, ...]) -> dict[str, Any]:
    # "ks" stays the key of the cached measurement and of reproduce.json (resume reads it)
    rows = [memory_in_k(shape, k) for k in inner_steps]
    return {"ks": [r["k"] for r in rows], "implicit_mib": [r["implicit_mib"] for r in rows],
            "unrolled_mib": [r["unrolled_mib"] for r in rows]}  # fmt: skip
