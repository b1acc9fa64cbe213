"""Runners: one interface over the backends (ONNX Runtime now; torch and TensorRT to come)."""

from .base import InputSpec, Runner
from .onnxruntime import PROVIDERS, OrtRunner

__all__ = ["PROVIDERS", "InputSpec", "OrtRunner", "Runner"]
