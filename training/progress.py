"""A rich progress bar for training: epoch, step, loss and speed; silent with --quiet."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    def __init__(self, epochs: int, steps_per_epoch: int, quiet: bool, warn: bool = True) -> None:
        self.epochs, self.steps_per_epoch, self.quiet = epochs, steps_per_epoch, quiet
        self.warn = warn
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=quiet,
            transient=False,
        )
        self.task = None

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=self.steps_per_epoch,
            epoch=1,
            epochs=self.epochs,
            loss=float("nan"),
            speed="",
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line saying what the run assumed on the user's behalf (silent with --quiet)."""
        if not self.quiet:
            self.console.print(escape(text), highlight=False)

    def start_epoch(self, epoch: int) -> None:
        self.progress.reset(self.task, total=self.steps_per_epoch)
        self.progress.update(self.task, epoch=epoch + 1)

    def step(self, epoch: int, loss: float) -> None:
        task = self.progress.tasks[0]
        speed = f"{task.speed:.1f} step/s" if task.speed else ""
        self.progress.update(self.task, advance=1, epoch=epoch + 1, loss=loss, speed=speed)

    def epoch_done(self, row: dict[str, Any]) -> None:
        # Warnings are shown even with --quiet: they say the numbers may not mean what they seem.
        for warning in row.get("warnings", ()) if self.warn else ():
            self.console.print(f"[yellow]warning[/] (epoch {row['epoch']}): {escape(warning)}")
        if not self.quiet:
            self.console.print(
                f"epoch {row['epoch']}: loss {row.get('loss', float('nan')):.4f}  "
                f"val top-1 {row['val_top1']:.1f}%  test top-1 {row['test_top1']:.1f}%  "
                f"({row['seconds']:.1f} s)"
            )
