"""``run_bench``: latency and accuracy of every model on every backend, and the verdict on the
claimed latency reduction against a baseline. Returns the report as plain JSON-able data."""

from __future__ import annotations

import dataclasses
import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy import __version__
from abrl_deploy.compare import agreement
from abrl_deploy.errors import ConfigError, DependencyError, RuntimeBackendError
from abrl_deploy.progress import Progress, quiet
from abrl_deploy.runtime.backends import BACKENDS, TABLE, make_runner, unavailable_reason

from .accuracy import accuracy, predict_all
from .environment import environment
from .images import eval_images, to_layout
from .measure import Subject, measure
from .models import ModelSource, resolve_model
from .spec import BenchSpec
from .stats import PERCENTILE_ESTIMATOR, STATISTICS, ratio_ci, verdict

SCHEMA = "abrl.bench"
SCHEMA_VERSION = 1


def run_bench(spec: BenchSpec, progress: Progress = quiet) -> dict[str, Any]:
    sources = _sources(spec)
    baseline = sources[-1].label if spec.baseline is not None else None
    plan, skipped = _plan(spec, sources)
    with tempfile.TemporaryDirectory(prefix="abrl-bench-") as tmp:
        sources = [_ensure_onnx(s, Path(tmp), plan, spec, progress) for s in sources]
        progress("reading the test images", None)
        data = _eval_data(sources, spec)
        results, logits = [], {}
        for backend in [b for b in BACKENDS if b in plan]:
            try:
                results += _bench_backend(backend, plan[backend], sources, data, spec, progress,
                                          logits)  # fmt: skip
            except (RuntimeBackendError, DependencyError) as exc:
                # e.g. onnxruntime-gpu lists CUDA on a machine without a GPU, then falls back
                if spec.backends is not None:
                    raise
                skipped.append({"backend": backend, "model": None, "reason": str(exc)})
        for backend in {r["backend"] for r in skipped} & set(plan):
            if not any(r["backend"] == backend for r in results):
                del plan[backend]
    _add_agreement(results, logits, sources, data, spec, progress)
    comparisons = _comparisons(results, baseline, spec) if baseline else []
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "abrl_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "protocol": {**spec.protocol.to_dict(), "batch": spec.batch, "threads": spec.threads,
                     "torch_compile": spec.compile, "percentile_estimator": PERCENTILE_ESTIMATOR},
        "claim": {"reduction": spec.claim, "baseline": baseline, "confidence": spec.confidence,
                  "rule": "ratio CI [lo, hi] of latency(model)/latency(baseline): SUPPORTED if "
                          "hi <= 1 - claim, REFUTED if lo > 1 - claim, else INCONCLUSIVE"},
        "models": [s.to_dict() for s in sources],
        "backends": {"measured": [b for b in BACKENDS if b in plan], "skipped": skipped},
        "results": results,
        "comparisons": comparisons,
        "warnings": [n for s in sources for n in s.notes]
        + [w for r in results for w in r["warnings"]],
    }  # fmt: skip


def _eval_data(sources: list[ModelSource], spec: BenchSpec) -> dict[str, tuple]:
    """Each model's test images; models that read the same split the same way share one copy
    (an A/B pair usually does: decoding a large test split twice is seconds wasted)."""
    loaded: dict[str, tuple] = {}
    data = {}
    for s in sources:
        c = s.card
        cfg = [c.config.get(k) for k in ("data_dir", "val_fraction", "limit")]
        key = json.dumps([c.dataset, c.num_classes, c.input_size, c.mean, c.std, c.seed, cfg,
                          c.preprocessing.get("eval")])  # fmt: skip
        if key not in loaded:
            loaded[key] = eval_images(c, spec.data_dir, spec.limit)
        data[s.label] = loaded[key]
    return data


def _sources(spec: BenchSpec) -> list[ModelSource]:
    """The models, then the baseline last; labels made unique."""
    seen = [Path(p).resolve() for p in spec.models]
    if len(set(seen)) != len(seen):
        raise ConfigError("a MODEL is given twice; give each model once")
    paths = [p for p in spec.models if spec.baseline is None or Path(p) != Path(spec.baseline)]
    if spec.baseline is not None:
        if not paths:
            raise ConfigError("--baseline is the only MODEL; give another model to compare with")
        paths.append(spec.baseline)
    sources = [resolve_model(p, spec.facts) for p in paths]
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        sources = [dataclasses.replace(s, label=str(s.path)) for s in sources]
    if len({s.label for s in sources}) != len(sources):
        raise ConfigError("--baseline is also a MODEL under another path; give it once")
    return sources


def _plan(spec: BenchSpec, sources: list[ModelSource]):
    """backend -> the labels it runs; and the skipped (backend, model, reason) rows.

    A backend named with --backend that cannot run is an error; by default it is skipped.
    """
    asked = spec.backends is not None
    plan: dict[str, list[str]] = {}
    skipped = []
    for backend in spec.backends or BACKENDS:
        reason = unavailable_reason(backend)
        if reason is not None:
            if asked:
                raise RuntimeBackendError(f"backend {backend} cannot run here: {reason}")
            skipped.append({"backend": backend, "model": None, "reason": reason})
            continue
        labels = []
        for s in sources:
            runnable = s.artifact_for(backend) is not None or (
                s.needs_export and TABLE[backend].artifact == "onnx"
            )
            if runnable:
                labels.append(s.label)
            elif asked:
                raise ConfigError(f"backend {backend}: {s.missing_reason(backend)}")
            else:
                skipped.append({"backend": backend, "model": s.label,
                                "reason": s.missing_reason(backend)})  # fmt: skip
        if labels:
            plan[backend] = labels
    if not plan:
        raise RuntimeBackendError(
            "no backend can run these models here: "
            + "; ".join(f"{r['backend']}: {r['reason']}" for r in skipped)
        )
    return plan, skipped


def _ensure_onnx(source, tmp: Path, plan, spec: BenchSpec, progress: Progress) -> ModelSource:
    """Export a run directory without model.onnx into ``tmp`` when an ONNX backend will run it."""
    if not source.needs_export or not any(
        TABLE[b].artifact == "onnx" and source.label in labels for b, labels in plan.items()
    ):
        return source
    from abrl_deploy.export.ensure import ensure_onnx

    progress(f"{source.label}: no model.onnx, exporting one (not saved)", None)
    out = tmp / f"{len(list(tmp.iterdir()))}-model.onnx"
    ensure_onnx(source.path, data_dir=spec.data_dir, out=out)
    return dataclasses.replace(source, artifacts={**source.artifacts, "onnx": out})


def _bench_backend(backend, labels, sources, data, spec: BenchSpec, progress, logits) -> list:
    """Every model of ``labels`` on ``backend``, measured together; their logits go to
    ``logits[(model, backend)]`` for the agreement check."""
    by_label = {s.label: s for s in sources}
    subjects = []
    for label in labels:
        source = by_label[label]
        # no spinning: idle ONNX Runtime threads of one model would slow the next one down
        runner = make_runner(backend, source.artifact_for(backend), threads=spec.threads,
                             compile=spec.compile, spinning=False,
                             ov_precision=spec.ov_precision)  # fmt: skip
        images = to_layout(data[label][0], source.card.layout)
        subjects.append(Subject(label, runner, images, (images,)))
    measured = measure(subjects, spec.batch, spec.protocol, progress, what=backend)
    rows = []
    for label, m in measured.items():
        logits[(label, backend)] = m.logits[0]
        rows.append({
            "model": label, "backend": backend, "runner": m.runner,
            "load_seconds": m.timing.load_seconds, "first_call_ms": m.timing.first_call_ms,
            "latency": m.latency.to_dict(),
            "device_latency": m.device_latency.to_dict() if m.device_latency else None,
            "samples_ms": m.timing.blocks.tolist(),
            "accuracy": accuracy(m.logits[0], data[label][1]), "agreement": None,
            "warnings": m.warnings,
        })  # fmt: skip
    return rows


def _add_agreement(results, logits, sources, data, spec: BenchSpec, progress: Progress) -> None:
    """Compare each result's logits with PyTorch's on the same images (computed if torch did not
    run as a backend); a model without a run directory is compared with its first backend."""
    for source in sources:
        rows = [r for r in results if r["model"] == source.label]
        if not rows:
            continue
        reference = logits.get((source.label, "torch"))
        ref_name = "torch" if reference is not None else None
        run = source.artifacts.get("run") or source.reference_run
        if reference is None and run is not None and unavailable_reason("torch") is None:
            progress(f"{source.label}: PyTorch reference logits", None)
            with make_runner("torch", run, threads=spec.threads) as runner:
                reference = predict_all(runner, data[source.label][0], spec.batch)
            # Named as a reference: for an INT8/FP16 file it is the FP32 checkpoint it came from.
            ref_name = "torch" if source.kind == "run" else f"torch reference: {run.name} fp32"
        if reference is None:
            reference, ref_name = logits[(source.label, rows[0]["backend"])], rows[0]["backend"]
        for r in rows:
            mine = logits[(r["model"], r["backend"])]
            r["agreement"] = {"reference": ref_name, **agreement(mine, reference)}


def _comparisons(results, baseline: str, spec: BenchSpec) -> list[dict[str, Any]]:
    base = {r["backend"]: r for r in results if r["model"] == baseline}
    rows = []
    for r in results:
        b = base.get(r["backend"])
        if r["model"] == baseline or b is None:
            continue
        for statistic in STATISTICS:
            ci = ratio_ci(np.asarray(r["samples_ms"]), np.asarray(b["samples_ms"]), statistic,
                          confidence=spec.confidence)  # fmt: skip
            rows.append({
                "model": r["model"], "baseline": baseline, "backend": r["backend"],
                **ci.to_dict(), "reduction": 1 - ci.ratio, "threshold": 1 - spec.claim,
                "verdict": verdict(ci.low, ci.high, spec.claim),
            })  # fmt: skip
    return rows
