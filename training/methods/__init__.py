"""Training methods, by name: finetune, joint, simclr, abrl."""

from . import abrl, finetune, simclr  # noqa: F401  (registers the methods)
from .base import Method, StepResult
from .registry import get_method, method_names, register_method

__all__ = ["Method", "StepResult", "get_method", "method_names", "register_method"]
