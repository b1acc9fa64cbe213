"""``abrl predict``: classify image files with an exported model (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .app import handle_errors
from .options import ServingBackend


@handle_errors
def predict(
    model: Annotated[Path, typer.Argument(help="An exported .onnx (or .engine with sidecar).")],
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, ...).")],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    backend: ServingBackend = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads.")] = None,
    card: Annotated[
        Path | None,
        typer.Option(
            "--card", help="A card JSON for a model without one (abrl bench --save-card writes it)."
        ),
    ] = None,  # fmt: skip
) -> None:
    """Print the top-k classes of each image, with the card's preprocessing."""
    from abrl_deploy.predictor import Predictor

    with Predictor(model, backend=backend, threads=threads, card=card) as predictor:
        if predictor.backend_note:
            Console(stderr=True).print(escape(predictor.backend_note), highlight=False)
        results = predictor.predict([str(p) for p in images], top_k=top_k)
        if as_json:
            for path, r in zip(images, results, strict=True):
                typer.echo(json.dumps({"image": str(path), **r.to_dict()}))
            return
        table = Table(title=f"{escape(str(model))} on {predictor.backend}")
        table.add_column("image", overflow="fold")
        table.add_column(f"top-{min(top_k, predictor.card.num_classes)} (probability)")
        for path, r in zip(images, results, strict=True):
            pairs = zip(r.labels, r.probabilities, strict=True)
            best = ", ".join(f"{escape(label)} ({p:.1%})" for label, p in pairs)
            table.add_row(escape(str(path)), best)
        Console().print(table)
