"""The progress callbacks long operations report through; the CLI draws them (cli/progress.py),
a library caller may pass its own or none."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float | None], None]  # (what is happening, fraction done or None)
GridProgress = Callable[[str, int, int], None]  # (what is happening, cells done, cells in all)


def quiet(message: str, *done: float | int | None) -> None:
    """Report nothing (the default of every long operation)."""


# A grid reports each cell as "<cell>: <state> ...": running, retried, then one of these when it
# ends in this session (a reused cell ends too, but trained nothing, so --quiet leaves it out).
CELL_ENDS = ("trained", "resumed", "failed")
