"""The ``abrl`` command line. Each command lives in its own module and imports torch lazily;
they are registered here, in the order ``abrl --help`` lists them."""

from __future__ import annotations

from . import bench, export, info, optimize, predict, reproduce, serve, train
from .app import app

COMMANDS = (train.train, export.export, info.info, bench.bench, optimize.optimize,
            predict.predict, serve.serve, reproduce.reproduce)  # fmt: skip
for _command in COMMANDS:
    app.command()(_command)


def main() -> None:
    app()


__all__ = ["COMMANDS", "app", "main"]
