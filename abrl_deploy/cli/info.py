"""``abrl info PATH``: what an artifact is (card, inputs/outputs, opset, size, precision)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .app import handle_errors


@handle_errors
def info(
    path: Annotated[Path, typer.Argument(help="Run directory, .onnx file or .engine.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a run directory, an ONNX file or a TensorRT engine."""
    from abrl_deploy.inspect import describe

    d = describe(path)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    table = Table(title=f"{d['kind']}: {d['path']}", show_header=False)
    card = d.get("card") or {}
    rows = {
        "method / backbone": f"{card.get('method')} / {card.get('backbone')}" if card else None,
        "classes": f"{card.get('num_classes')}: {', '.join(card.get('class_names', [])[:8])}"
        if card else None,
        "input": f"{card.get('input_size')} px, mean {card.get('mean')}, std {card.get('std')}"
        if card else None,
        "test top-1": card.get("metrics", {}).get("test_top1"),
        "precision": d.get("precision"),
        "opset": d.get("opset"),
        "producer": d.get("producer"),
        "inputs": d.get("inputs"),
        "outputs": d.get("outputs"),
        "size (bytes)": d.get("size_bytes"),
        "files": d.get("files"),
        "exporter": card.get("export", {}).get("exporter") if card else None,
        "note": d.get("note"),
    }  # fmt: skip
    for key, value in rows.items():
        if value is not None:
            table.add_row(key, str(value))
    Console().print(table)
