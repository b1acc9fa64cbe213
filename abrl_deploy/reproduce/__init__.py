"""``abrl reproduce``: the paper's tables and claims, measured with their uncertainty.

Torch-free to import; training, export and timing import torch when they run. Lazy (PEP 562):
``plan`` (ReproduceSpec) is numpy-free, so the CLI reads its defaults for --help at no cost.
"""

from importlib import import_module
from typing import Any

_WHERE = {"reproduce": ".api", "ReproduceSpec": ".plan"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
