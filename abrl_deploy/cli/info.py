"""``abrl info PATH``: what an artifact is, as a report (card, heads, training, deploy record,
inputs/outputs, opset, sizes); ``--json`` for scripts (the description plus the same report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .app import handle_errors

SHOWN_CLASSES = 8


@handle_errors
def info(
    path: Annotated[Path, typer.Argument(help="Run directory, .onnx file or .engine.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a run directory, an ONNX file or a TensorRT engine."""
    from abrl_deploy.inspect import describe

    d = describe(path)
    rows = report(d)
    if as_json:
        typer.echo(json.dumps({**d, "report": rows}, indent=2))
        return
    table = Table(title=f"{d['kind']}: {d['path']}", show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)


def report(d: dict[str, Any]) -> dict[str, str]:
    """The description as readable lines: rounded as the bench rounds, sizes in KB/MB."""
    card = d.get("card") or {}
    rows: dict[str, str | None] = {
        "method / backbone": f"{card['method']} / {card['backbone']}" if card else None,
        "classes": _classes(card) if card else None,
        "input": _input(card) if card else None,
        "test top-1": _pct(card.get("metrics", {}).get("test_top1")),
        "heads (test top-1)": _heads(card.get("head") or {}),
        "ABRL inner problem": _abrl(card.get("head") or {}),
        "trained": _training(card.get("training") or {}),
        "deploy record": _deploy(card),
        "precision": d.get("precision"),
        "opset": _plain(d.get("opset")),
        "producer": d.get("producer"),
        "inputs": _plain(d.get("inputs")),
        "outputs": _plain(d.get("outputs")),
        "size": _size(d["size_bytes"]) if d.get("size_bytes") is not None else None,
        "files": _files(d.get("files")),
        "exporter": (card.get("export") or {}).get("exporter") if card else None,
        "note": d.get("note"),
    }
    return {k: v for k, v in rows.items() if v is not None}


def _pct(value: Any) -> str | None:
    return None if value is None else f"{float(value):.2f}%"


def _plain(value: Any) -> str | None:
    return None if value is None else str(value)


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**10:.1f} KB" if n >= 2**10 else f"{n} B"


def _files(files: dict[str, int] | None) -> str | None:
    if not files:
        return None
    return ", ".join(f"{name} ({_size(size)})" for name, size in files.items())


def _classes(card: dict[str, Any]) -> str:
    names = list(card.get("class_names", []))
    shown = ", ".join(names[:SHOWN_CLASSES]) + (", …" if len(names) > SHOWN_CLASSES else "")
    return f"{card.get('num_classes')}: {shown}"


def _input(card: dict[str, Any]) -> str:
    mean = ", ".join(f"{m:.3f}" for m in card.get("mean", ()))
    std = ", ".join(f"{s:.3f}" for s in card.get("std", ()))
    return f"{card.get('input_size')} px {card.get('layout', 'NCHW')}, mean ({mean}), std ({std})"


def _heads(head: dict[str, Any]) -> str | None:
    if "refit_head" not in head:
        return None
    own, refit = head.get("own_head", {}).get("top1"), head["refit_head"].get("top1")
    return (f"refit {_pct(refit)} · own {_pct(own)} ({head.get('own_head_kind', 'own')}); "
            f"saved: {head.get('source', '?')}")  # fmt: skip


def _abrl(head: dict[str, Any]) -> str | None:
    if "inner_problem" not in head:
        return None
    line = str(head["inner_problem"])
    split = head.get("split_diagnostics")
    if split:
        line += (f"; on {split['rows']} train rows: ‖∇L_in‖/μ {split['residual_over_ridge']:.3g}, "
                 f"distance to the optimum {split['distance_to_optimum']:.3g}, "
                 f"head top-1 {_pct(split['head_top1'])}")  # fmt: skip
    return line


def _training(training: dict[str, Any]) -> str | None:
    if not training:
        return None
    layout = ", channels_last" if training.get("channels_last") else ""
    return (f"{training.get('precision')}{layout} on {training.get('device')} "
            f"({training.get('precision_reason')}); CPU {training.get('cpu')}")  # fmt: skip


def _deploy(card: dict[str, Any]) -> str | None:
    record = card.get("deploy")
    if not record:
        return None
    from abrl_deploy.card import ModelCard
    from abrl_deploy.deploy_record import deploy_choice
    from abrl_deploy.errors import AbrlError

    try:
        applies, why = deploy_choice(ModelCard.from_dict(card))
        here = "matches this machine" if applies else f"does not apply here: {why}"
    except AbrlError as exc:  # a card this abrl cannot read: reported, never a traceback
        here = f"unreadable here ({exc})"
    choice = record.get("choice") if isinstance(record, dict) else None
    if not isinstance(choice, dict):
        return here
    precision = choice.get("runtime_precision") or choice.get("ov_precision") or "?"
    speed = record.get("speedup_vs_torch_eager")
    measured_on = record.get("machine")
    machine = measured_on.get("cpu", "?") if isinstance(measured_on, dict) else "?"
    speed_text = f", {speed:.2f}× PyTorch eager" if isinstance(speed, (int, float)) else ""
    images = record.get("chosen_on")
    if not isinstance(images, str):  # records of abrl optimize before it chose on test images
        images = "the validation split (an older abrl; ABRL's outer loss trains on it)"
    return (f"{choice.get('backend')} in {precision}{speed_text}, chosen on {machine} from "
            f"{images}; {here}")  # fmt: skip
