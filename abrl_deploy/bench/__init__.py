"""Bench: latency and accuracy across backends, with a verdict on a claimed latency reduction.

Torch-free at import; PyTorch loads only when the torch backend (or an on-the-fly export) runs.
Lazy (PEP 562): ``abrl_deploy.bench.spec`` (BenchSpec, Protocol, ModelFacts) is numpy-free, so the
CLI reads its defaults for --help at no cost.
"""

from importlib import import_module
from typing import Any

_WHERE = {"run_bench": ".api", "ModelSource": ".models", "resolve_model": ".models",
          "BenchSpec": ".spec", "ModelFacts": ".spec", "Protocol": ".spec"}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
