"""The ``abrl`` command line. Each command lives in its own module and imports torch lazily."""

from __future__ import annotations

from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
