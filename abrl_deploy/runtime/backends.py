"""The one table of backends: what each runs, whether it can run here and why not, how its runner
is made, whether one runner may serve threads, and its compute precision. bench, the Predictor,
optimize, serve, the deploy record and the CLI help all read it (docs/architecture.md).

Pure data plus lazy imports: reading the table imports no runtime, numpy or torch, so ``abrl
--help`` lists the backends at no cost, and availability is asked without building anything.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abrl_deploy.errors import RuntimeBackendError

from .providers import ORT_PROVIDERS

if TYPE_CHECKING:
    from .base import Runner


@dataclass(frozen=True)
class RunnerOptions:
    """What a caller may ask of a runner; each backend's factory takes the options it knows."""

    threads: int | None = None
    compile: bool = False  # torch.compile (PyTorch backends)
    spinning: bool = True  # ONNX Runtime's busy-waiting intra-op threads
    ov_precision: str = "auto"  # OpenVINO's inference precision ("auto": OpenVINO's choice)


@dataclass(frozen=True)
class Backend:
    name: str
    artifact: str  # what it runs: "run" (a training run directory), "onnx" or "engine"
    library: str  # the Python package it needs (availability, install hints)
    device: str  # "cpu" or "cuda"
    thread_safe: bool  # one open runner may serve concurrent calls (else the Predictor locks)
    precision: str  # its compute precision, in words, for help and reports
    factory: Callable[[Backend, Path, RunnerOptions], Runner]
    providers: tuple[str, ...] = ()  # ONNX Runtime's execution providers, in order
    auto_rank: int | None = None  # the Predictor's ``auto`` tries these, lowest first
    candidate: bool = False  # a runtime ``abrl optimize`` times by default

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run on this machine, or None if it can."""
        if importlib.util.find_spec(self.library) is None:
            what, extra = _INSTALL[self.library]
            return f"{what} is not installed (pip install {extra})"
        if self.providers:
            import onnxruntime

            if self.providers[0] not in onnxruntime.get_available_providers():
                return (f"this onnxruntime has no {self.providers[0]} (pip install 'abrl[gpu]' "
                        "on an NVIDIA machine)")  # fmt: skip
            # no torch probe: a runtime-only install has none; a provider listed without a
            # usable GPU is caught when the session opens (OrtRunner refuses the fallback)
            return None
        return _cuda_reason() if self.device == "cuda" else None


# library -> (its name in messages, what to install)
_INSTALL = {
    "torch": ("PyTorch", "'abrl[train]'"),
    "onnxruntime": ("onnxruntime", "'abrl[runtime]' or 'abrl[gpu]'"),
    "openvino": ("OpenVINO", "'abrl[openvino]'"),
    "tensorrt": ("TensorRT", "'abrl[gpu]' on an NVIDIA machine"),
}


def _cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "needs PyTorch with CUDA to find the GPU"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device is visible"


def _torch(b: Backend, path: Path, o: RunnerOptions) -> Runner:
    from .pytorch import TorchRunner

    return TorchRunner(path, device=b.device, compile=o.compile, threads=o.threads,
                       bf16=b.name == "torch-bf16")  # fmt: skip


def _ort(b: Backend, path: Path, o: RunnerOptions) -> Runner:
    from .onnxruntime import OrtRunner

    return OrtRunner(path, b.name, threads=o.threads, spinning=o.spinning)


def _openvino(b: Backend, path: Path, o: RunnerOptions) -> Runner:
    from .openvino import OvRunner

    return OvRunner(path, precision=o.ov_precision, threads=o.threads)


def _tensorrt(b: Backend, path: Path, o: RunnerOptions) -> Runner:
    from .tensorrt import TrtRunner

    return TrtRunner(path)


TABLE: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "run", "torch", "cpu", False, "fp32", _torch),
    Backend("torch-bf16", "run", "torch", "cpu", False, "bf16 autocast", _torch, candidate=True),
    Backend("torch-cuda", "run", "torch", "cuda", False, "fp32", _torch),
    Backend("ort-cpu", "onnx", "onnxruntime", "cpu", True, "the file's", _ort,
            ORT_PROVIDERS["ort-cpu"], auto_rank=2, candidate=True),
    Backend("ort-cuda", "onnx", "onnxruntime", "cuda", True, "the file's", _ort,
            ORT_PROVIDERS["ort-cuda"], auto_rank=1),
    Backend("ort-trt", "onnx", "onnxruntime", "cuda", True, "TensorRT EP's", _ort,
            ORT_PROVIDERS["ort-trt"], auto_rank=0),
    # one infer request: "Infer Request is busy" under concurrent calls
    Backend("ov-cpu", "onnx", "openvino", "cpu", False, "OpenVINO's hint (--ov-precision)",
            _openvino, candidate=True),
    Backend("trt", "engine", "tensorrt", "cuda", False, "the engine's", _tensorrt),  # one context
)}  # fmt: skip

BACKENDS = tuple(TABLE)
# what a service runs: exported files, not training runs
SERVING_BACKENDS = tuple(n for n, b in TABLE.items() if b.artifact != "run")
AUTO_ORDER = tuple(sorted((n for n, b in TABLE.items() if b.auto_rank is not None),
                          key=lambda n: TABLE[n].auto_rank))  # fmt: skip
CANDIDATE_BACKENDS = tuple(n for n, b in TABLE.items() if b.candidate)


def backend(name: str) -> Backend:
    if name not in TABLE:
        raise RuntimeBackendError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    return TABLE[name]


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine, or None if it can."""
    return backend(name).unavailable_reason()


def make_runner(name: str, path: str | Path, **options: Any) -> Runner:
    """The (unopened) runner of ``path`` on backend ``name``; ``options`` are RunnerOptions'."""
    b = backend(name)
    return b.factory(b, Path(path), RunnerOptions(**options))
