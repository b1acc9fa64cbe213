"""Options that several commands declare the same way (one help text, one behaviour)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer

from abrl_deploy.runtime.backends import AUTO_ORDER, SERVING_BACKENDS

RunDataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="The run's dataset, if it moved.")
]

# predict and serve: the backend table's serving rows, `auto` first
ServingBackend = Annotated[
    str,
    typer.Option(
        "--backend",
        help=f"auto (the file's recorded choice, else the first of {', '.join(AUTO_ORDER)} that "
        f"runs here), {', '.join(SERVING_BACKENDS)}.",
    ),
]


def defaults(spec: type) -> SimpleNamespace:
    """A spec dataclass's defaults, for the CLI's own: each default is written once, there."""
    return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(spec)
                              if f.default is not dataclasses.MISSING})  # fmt: skip
