"""Bench: latency and accuracy across backends, with a verdict on a claimed latency reduction.

Torch-free at import; PyTorch loads only when the torch backend (or an on-the-fly export) runs.
"""

from .api import run_bench
from .models import ModelFacts, ModelSource, resolve_model
from .protocol import Protocol
from .spec import BenchSpec

__all__ = ["BenchSpec", "ModelFacts", "ModelSource", "Protocol", "resolve_model", "run_bench"]
