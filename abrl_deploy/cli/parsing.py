"""Comma-separated option values (``--batch-range 1,64,256``, ``--mean 0.5,0.5,0.5``,
``--seeds 0,1,2``), parsed one way for every command."""

from __future__ import annotations

from enum import Enum

from abrl_deploy.errors import ConfigError


def parse_numbers(
    text: str, flag: str, *, kind: type = int, n: int | None = None, example: str = "",
    skip_empty: bool = False,
) -> tuple:  # fmt: skip
    """``text`` as a tuple of ``kind`` (exactly ``n`` of them if given); ConfigError otherwise."""
    parts = [v for v in text.split(",") if v.strip() or not skip_empty]
    try:
        values = tuple(kind(v) for v in parts)
    except ValueError:
        values = None
    if values is None or (n is not None and len(values) != n):
        count = f"{n} " if n is not None else ""
        noun = "integers" if kind is int else "numbers"
        eg = f", e.g. {example}" if example else ""
        raise ConfigError(f"{flag} {text!r}: expected {count}comma-separated {noun}{eg}")
    return values


def parse_names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` as ``("a", "b", "c")``: comma-separated names, blanks dropped."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice type for ``values``, read from the module that owns them (one list)."""
    return Enum(name, {v: v for v in values}, type=str)
