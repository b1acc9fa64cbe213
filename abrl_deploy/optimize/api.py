"""``run_optimize``: build the variants, open them all, score them on the validation and test
splits, time them together with the bench's interleaved protocol, choose, and write the chosen
file (its card records the choice) and the report. Returns the report as plain JSON-able data."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from abrl_deploy import __version__
from abrl_deploy.artifacts import CARD, OPTIMIZE_REPORTS, WEIGHTS, refuse_overwrite
from abrl_deploy.bench.accuracy import accuracy
from abrl_deploy.bench.environment import environment
from abrl_deploy.bench.images import ALL
from abrl_deploy.bench.measure import Measurement, Subject, measure, skip_and_record
from abrl_deploy.bench.stats import ratio_ci
from abrl_deploy.card import ModelCard
from abrl_deploy.compare import agreement
from abrl_deploy.errors import ConfigError, DependencyError
from abrl_deploy.machine import signature
from abrl_deploy.progress import Progress, quiet
from abrl_deploy.runtime.backends import TABLE, make_runner, unavailable_reason

from .artifacts import ensure_files
from .candidates import REFERENCE, Candidate, bf16_decision, plan_candidates
from .choice import choose, mark_eligible, mark_frontier
from .report import write_reports
from .spec import OptimizeSpec

SCHEMA = "abrl.optimize"
SCHEMA_VERSION = 2  # 2: chosen on the test split's select half (1: on the validation split)
# The images the choice is made on, named in every report and deploy record
CHOSEN_ON = "select half of the test split"


def run_optimize(spec: OptimizeSpec, progress: Progress = quiet) -> dict[str, Any]:
    reason = unavailable_reason("torch")
    if reason is not None:
        raise DependencyError(f"abrl optimize measures against PyTorch eager: {reason}")
    from abrl_deploy.export.images import run_images

    run_card = _run_card(Path(spec.run_dir))
    _refuse_overwrite(spec)
    files, notes, skipped = ensure_files(spec, progress)
    candidates, not_planned = plan_candidates(spec, files)
    skipped += not_planned
    progress("reading the test split's select and holdout halves", None)
    select = run_images(run_card, "select", spec.select_images or ALL, spec.data_dir)
    holdout = run_images(run_card, "holdout", spec.holdout_images or ALL, spec.data_dir)
    rows = _measure(candidates, files, select, holdout, spec, progress, skipped)
    reference = next(r for r in rows if r["label"] == REFERENCE)
    mark_eligible(rows, reference["select"]["top1"], spec.max_drop)
    mark_frontier(rows)
    chosen = choose(rows)
    if not any(r["shippable"] for r in rows):
        raise ConfigError(
            f"no ONNX variant of {spec.run_dir} could run here; "
            + "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped)
        )
    if chosen is None:
        raise ConfigError(
            f"no ONNX variant of {spec.run_dir} is within --max-drop {spec.max_drop} points of "
            f"PyTorch's {reference['select']['top1']:.2f}% top-1 on the select images; raise "
            "--max-drop"
        )
    report = _report(spec, rows, reference, chosen, notes, skipped, len(select[1]),
                     len(holdout[1]))  # fmt: skip
    _write_deploy(spec, chosen, report)  # first: the reports describe the file written
    write_reports(report, spec)
    return report


def _run_card(run_dir: Path) -> ModelCard:
    if not (run_dir / CARD).is_file() or not (run_dir / WEIGHTS).is_file():
        raise ConfigError(
            f"{run_dir} is not a finished run directory (card.json and model.safetensors); "
            "give the folder abrl train wrote"
        )
    return ModelCard.load(run_dir / CARD)


def _refuse_overwrite(spec: OptimizeSpec) -> None:
    outputs = [spec.deploy_path] + [spec.report_path(k) for k in OPTIMIZE_REPORTS]
    refuse_overwrite(outputs, spec.force)


def _measure(candidates: list[Candidate], files, select, holdout, spec: OptimizeSpec, progress,
             skipped: list[dict[str, str]]) -> list[dict[str, Any]]:  # fmt: skip
    """Every candidate measured together (bench's routine), scored on both halves; a candidate
    that cannot open is skipped with its reason, except the reference."""
    subjects = [Subject(c.label, make_runner(c.backend, c.artifact(spec.run_dir, files),
                                             threads=spec.threads, spinning=False,
                                             ov_precision=c.ov_precision),
                        select[0], (select[0], holdout[0])) for c in candidates]  # fmt: skip
    measured = measure(subjects, spec.batch, spec.protocol, progress, what="optimize",
                       skip=skip_and_record(skipped, REFERENCE))  # fmt: skip
    ref = measured[REFERENCE]
    by_label = {c.label: c for c in candidates}
    return [_row(by_label[label], files, m, ref, select[1], holdout[1])
            for label, m in measured.items()]  # fmt: skip


def _row(c: Candidate, files, m: Measurement, ref: Measurement, select_labels,
         holdout_labels) -> dict[str, Any]:  # fmt: skip
    # the reference against itself is 1 exactly (its bootstrap is degenerate, and costly)
    ci = ratio_ci(m.timing.blocks, ref.timing.blocks, "p50") if c.label != REFERENCE else None
    speedup = ({"p50": 1.0, "low": 1.0, "high": 1.0, "confidence": None, "method": "identity"}
               if ci is None else {"p50": 1 / ci.ratio, "low": 1 / ci.high, "high": 1 / ci.low,
                                   "confidence": ci.confidence, "method": ci.method})  # fmt: skip
    return {
        "label": c.label, "backend": c.backend, "shippable": c.shippable,
        "file": "run directory (PyTorch checkpoint)" if c.file == "run" else str(files[c.file]),
        "file_precision": "fp32" if c.file == "run" else c.file,
        "runtime_precision": _runtime_precision(c, m.runner),
        "runner": m.runner, "load_seconds": m.timing.load_seconds,
        "first_call_ms": m.timing.first_call_ms, "latency": m.latency.to_dict(),
        "samples_ms": m.timing.blocks.tolist(),
        # latency(eager) / latency(this), from the paired ratio's bootstrap interval
        "speedup": speedup,
        "select": accuracy(m.logits[0], select_labels),
        "holdout": accuracy(m.logits[1], holdout_labels),
        "holdout_agreement": agreement(m.logits[1], ref.logits[1]),
        "warnings": m.warnings,
    }  # fmt: skip


def _runtime_precision(c: Candidate, runner: dict[str, Any]) -> str:
    """What really ran: the table's precision for PyTorch (fp32, bf16 autocast), OpenVINO's read
    back from the compiled model, the file's for ONNX Runtime."""
    if c.file == "run":
        return TABLE[c.backend].precision
    if c.backend == "ov-cpu":
        return f"{c.file} file, {runner['inference_precision']} compute"
    return {"fp32": "fp32", "fp16": "fp16", "int8": "int8 QDQ"}[c.file]


def _report(spec, rows, reference, chosen, notes, skipped, n_select, n_holdout) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "abrl_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(spec.run_dir), "environment": environment(), "machine": signature(),
        "protocol": {**spec.protocol.to_dict(), "batch": spec.batch, "threads": spec.threads},
        "rule": {
            "max_drop": spec.max_drop, "reference": REFERENCE,
            "reference_select_top1": reference["select"]["top1"], "select_images": n_select,
            "holdout_images": n_holdout, "points_per_select_image": 100 / n_select,
            "chosen_on": CHOSEN_ON,
            "bf16": bf16_decision(spec)[1],
            "text": "chosen on the select half of the test split (no method of the run trained "
                    "on it; ABRL's outer loss trains on the validation split): the fastest "
                    "shippable variant (median latency) whose top-1 is at most max_drop points "
                    "below the reference's; the holdout half is reported, never used to choose",
        },
        "notes": notes, "skipped": skipped,
        "warnings": [w for r in rows for w in r["warnings"]],
        "candidates": rows, "chosen": chosen["label"],
        "deploy": str(spec.deploy_path),
    }  # fmt: skip


def _write_deploy(spec: OptimizeSpec, chosen: dict[str, Any], report) -> None:
    """The chosen ONNX file under ``model.deploy.onnx``, its card recording the choice."""
    from abrl_deploy.export.onnx import embed_card

    source = Path(chosen["file"])
    card = ModelCard.from_onnx_file(source)
    ov = chosen["runner"].get("precision_asked") if chosen["backend"] == "ov-cpu" else None
    record = {
        "choice": {"backend": chosen["backend"], "ov_precision": ov,
                   "runtime_precision": chosen["runtime_precision"],
                   "threads": spec.threads},
        "source": source.name, "machine": report["machine"],
        "batch": spec.batch, "p50_ms": chosen["latency"]["p50_ms"],
        "speedup_vs_torch_eager": chosen["speedup"]["p50"],
        "chosen_on": CHOSEN_ON,
        "select_top1": chosen["select"]["top1"], "holdout_top1": chosen["holdout"]["top1"],
        "reference_select_top1": report["rule"]["reference_select_top1"],
        "max_drop": spec.max_drop, "report": OPTIMIZE_REPORTS["json"], "created": report["created"],
    }  # fmt: skip
    embed_card(source, card.replace(deploy=record), dst=spec.deploy_path)
