"""Runners: one interface over the backends (ONNX Runtime, PyTorch, OpenVINO, TensorRT).

Every name is exported lazily (PEP 562): ``abrl_deploy.runtime.backends``, the backend table the
CLI help reads, is importable without numpy, torch or any runtime.
"""

from importlib import import_module
from typing import Any

_WHERE = {"InputSpec": ".base", "Runner": ".base", "OrtRunner": ".onnxruntime",
          "TrtRunner": ".tensorrt"}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
