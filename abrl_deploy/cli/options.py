"""Options that several commands declare the same way (one help text, one behaviour)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunDataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="The run's dataset, if it moved.")
]
