"""Run the cells of a grid: reuse finished runs, resume unfinished ones, train the rest.

A run is finished when its card.json parses and model.safetensors exists (train() writes the
weights, then the card, both atomically, so a card is only ever beside its weights). A run with a
state.pt is resumed exactly (``train(..., resume=True)``). A run directory holding neither is a run
killed before its first checkpoint and is started over.

``run_grid`` is the local executor: one cell after another in this process (executors.py holds
the Ray one; both call ``run_cell``, the code of ``abrl train``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abrl_deploy.artifacts import CARD, CONFIG, METRICS, STATE, WEIGHTS
from abrl_deploy.errors import AbrlError, ConfigError, first_line

from .plan import Cell


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    action: str  # "reused", "resumed" or "trained"
    metrics: dict[str, Any]
    head: dict[str, Any]  # the card's record of the saved head (ABRL: both heads' accuracies)
    seconds: float
    resumed_from_epoch: int | None = None  # the epochs its state.pt held when it was resumed


@dataclass(frozen=True)
class GridRun:
    """What a grid's executor returns: the finished cells in plan order, and the failed ones."""

    results: list[CellResult]
    failed: dict[str, str]  # cell name -> the one-line error of a cell that failed on its own


def run_state(run_dir: Path) -> str:
    """One of finished, card-only (finished elsewhere, brought back without its weights: enough
    for a report), partial (resumable) or empty."""
    if _read_card(run_dir) is not None:
        return "finished" if (run_dir / WEIGHTS).is_file() else "card-only"
    if (run_dir / STATE).is_file():
        return "partial"
    return "empty"


def _read_card(run_dir: Path) -> dict[str, Any] | None:
    try:
        card = json.loads((run_dir / CARD).read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and "metrics" in card else None


def build_config(cell: Cell):
    """The TrainConfig of ``cell``: its preset YAML, then the cell's overrides."""
    from abrl_deploy.training.config import load_config

    return load_config(cell.config_file, **dict(cell.overrides))


def _check_same_config(cell: Cell, planned: dict[str, Any]) -> None:
    """A saved run reused for another config would put wrong numbers in the tables."""
    from abrl_deploy.training.config import fields_read_by, load_config

    saved = load_config(cell.run_dir / CONFIG, ignore_unknown=True).to_dict()
    # the fields the planned method does not read may differ (TrainConfig's METHOD_FIELDS): a
    # fine-tune saved when ABRL's defaults were other is the same run
    unread = set(planned) - fields_read_by(planned.get("method", "abrl"))
    diff = sorted(
        k for k in planned
        if k not in unread and not _resolved_later(k, planned[k]) and saved.get(k) != planned[k]
    )  # fmt: skip
    if diff:
        shown = ", ".join(f"{k}: run has {saved.get(k)!r}, plan has {planned[k]!r}" for k in diff)
        raise ConfigError(
            f"{cell.run_dir} was trained with another config ({shown}); pass --force to retrain "
            "the grid, or give another --out"
        )


def _resolved_later(key: str, value: Any) -> bool:
    """The trainer fills in image_size and stem (from the dataset) before it saves the config."""
    from abrl_deploy.training.config import WHERE_FIELDS  # where, not what: never the numbers

    return key in WHERE_FIELDS or value is None or (key == "stem" and value == "auto")


def check_cell(cell: Cell, *, force: bool, report_only: bool = False) -> str:
    """The cell's run_state, after refusing a saved run the plan cannot reuse: a wrong --out or
    changed options are a mistake of the whole grid, raised before anything trains."""
    state = "empty" if force else run_state(cell.run_dir)
    if state != "empty":
        _check_same_config(cell, build_config(cell).to_dict())
    if state == "card-only" and not report_only:
        raise ConfigError(
            f"{cell.run_dir} has a card but no {WEIGHTS} (trained elsewhere, weights not brought "
            "back?); report it with --report-only, or retrain with --force"
        )
    return state


def run_cell(
    cell: Cell, *, force: bool, report_only: bool = False, state: str | None = None
) -> CellResult:
    """Train, resume or reuse one cell; returns the finished run's card metrics. ``state``: what
    ``check_cell`` returned, when the caller has just checked the cell."""
    t0 = time.perf_counter()
    if state is None:
        state = check_cell(cell, force=force, report_only=report_only)
    resumed_from = None
    if state in ("finished", "card-only"):
        action = "reused"
    else:
        from abrl_deploy.training import train

        if state == "partial":
            action = "resumed"
            result = train(None, cell.run_dir, resume=True, quiet=True)
            resumed_from = result.resumed_at_epoch if result is not None else None
        else:
            action = "trained"
            # force also when not asked: an "empty" dir may hold files of a run killed early
            train(build_config(cell), cell.run_dir, force=True, quiet=True)
    card = _read_card(cell.run_dir)
    if card is None:
        raise ConfigError(f"{cell.run_dir}: training ended without a readable card.json")
    return CellResult(cell, action, card["metrics"], card.get("head") or {},
                      time.perf_counter() - t0, resumed_from)  # fmt: skip


def run_grid(
    cells: list[Cell],
    *,
    force: bool,
    train: bool = True,
    progress: Callable[[Cell, int, str], None] | None = None,
) -> GridRun:
    """Run every cell in order; ``progress(cell, cells done, what)`` before and after each.

    With ``train=False`` only finished runs are read (after the same config check) and the
    others are left out: a report of what a grid has so far. A cell whose training fails with an
    AbrlError (bad data, divergence) is recorded in ``failed`` and the grid goes on; any other
    exception (a bug, Ctrl-C) stops the grid with its traceback, as before.
    """
    results, failed = [], {}
    for i, cell in enumerate(cells):
        if progress:
            progress(cell, i, "running")
        what = "missing"
        if train or run_state(cell.run_dir) in ("finished", "card-only"):
            # outside the try: a grid-level mistake stops the grid
            state = check_cell(cell, force=force, report_only=not train)
            try:
                results.append(run_cell(cell, force=force, report_only=not train, state=state))
                what = results[-1].action
            except AbrlError as exc:
                failed[cell.name] = f"{type(exc).__name__}: {first_line(exc)}"
                what = f"failed: {failed[cell.name]}"
        if progress:
            progress(cell, i + 1, what)
    return GridRun(results, failed)


def read_curves(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (empty if the run has none)."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
