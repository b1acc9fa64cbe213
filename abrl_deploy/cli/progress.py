"""The progress bar of the long commands (bench, optimize): on stderr, gone when done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console


def run_with_progress(run: Callable[..., Any], spec: Any, quiet: bool) -> Any:
    """``run(spec, progress)`` with a bar fed by ``progress(message, fraction or None)``."""
    if quiet:
        return run(spec)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def progress(message: str, fraction: float | None) -> None:
            total = None if fraction is None else 1.0
            bar.update(task, description=message, total=total, completed=fraction or 0)

        return run(spec, progress)


def cell_lines(console: Console | None = None) -> Callable[[str, int, int], None]:
    """A GridProgress for --quiet: one line per cell that ended in this session, nothing else."""
    from abrl_deploy.progress import CELL_ENDS

    out = console or Console(stderr=True, highlight=False, soft_wrap=True)
    last = {"done": 0}

    def progress(message: str, done: int, total: int) -> None:
        grew, last["done"] = done > last["done"], max(done, last["done"])
        state = message.partition(": ")[2].split(" ", 1)[0].rstrip(":")
        if grew and state in CELL_ENDS:
            out.print(f"[{done}/{total}] {message}", markup=False)

    return progress
