"""Runners: one interface over the backends (ONNX Runtime, PyTorch, TensorRT).

``TrtRunner`` is exported lazily (PEP 562), so importing this package stays torch-free and
TensorRT-free; ``abrl_deploy.runtime.tensorrt`` imports them only when a runner opens.
"""

from typing import Any

from .base import InputSpec, Runner
from .onnxruntime import PROVIDERS, OrtRunner

__all__ = ["PROVIDERS", "InputSpec", "OrtRunner", "Runner", "TrtRunner"]


def __getattr__(name: str) -> Any:
    if name == "TrtRunner":
        from .tensorrt import TrtRunner

        return TrtRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
