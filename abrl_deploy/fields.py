"""Field rules for the JSON records abrl reads back: the model card (card.json, the card embedded
in an ONNX file, a TensorRT engine's sidecar, a ``--card`` file) and its deploy record.

A rule is (what is expected, in words; a predicate). Readers check each field where they read it
and report the first broken one as one line naming the field, the value and what was expected.
Torch-free and dependency-free: the runtime-only install reads cards too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

Rule = tuple[str, Callable[[Any], bool]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _or_null(rule: Rule, null: bool) -> Rule:
    words, ok = rule
    return (f"{words} or null", lambda v: v is None or ok(v)) if null else rule


def integer(low: int, high: int | None, *, null: bool = False, words: str | None = None) -> Rule:
    """An integer in [low, high] (no upper bound when ``high`` is None)."""
    words = words or (f"an integer from {low:,} to {high:,}" if high is not None
                      else f"an integer >= {low:,}")  # fmt: skip
    return _or_null(
        (words, lambda v: _is_int(v) and low <= v and (high is None or v <= high)), null
    )


def text(*, null: bool = False, max_len: int = 10_000) -> Rule:
    return _or_null(("a text", lambda v: isinstance(v, str) and len(v) <= max_len), null)


def texts() -> Rule:
    return ("a list of texts", lambda v: isinstance(v, (list, tuple))
            and all(isinstance(x, str) for x in v))  # fmt: skip


def numbers(n: int) -> Rule:
    def ok(v: Any) -> bool:
        sized = isinstance(v, (list, tuple)) and len(v) == n
        return sized and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)

    return (f"{n} numbers", ok)


def one_of(values: Collection[Any], *, null: bool = False) -> Rule:
    return _or_null((f"one of {tuple(values)}", lambda v: v in values), null)


def obj(values: Rule | None = None) -> Rule:
    """A JSON object; with ``values``, each of its values follows that rule."""
    if values is None:
        return ("a JSON object", lambda v: isinstance(v, dict))
    words, ok = values
    return (f"an object of {words}", lambda v: isinstance(v, dict) and all(map(ok, v.values())))


def problem(rules: dict[str, Rule], data: dict[str, Any], prefix: str = "") -> str | None:
    """The first field of ``data`` that breaks its rule, as one line; None when all keep them.
    Fields without a rule are not looked at (a newer abrl may have written them)."""
    for name, (words, ok) in rules.items():
        if name in data and not ok(data[name]):
            return f"{prefix}{name} is {show(data[name])}, expected {words}"
    return None


def show(value: Any) -> str:
    """A value as JSON, cut to 40 characters."""
    text_ = json.dumps(value, default=str)
    return text_ if len(text_) <= 40 else text_[:37] + "..."
