"""The backend names, what artifact each runs, whether it can run here, and its runner.

Availability is asked without building anything, so ``abrl bench`` can list what it skips and why.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from abrl_deploy.errors import RuntimeBackendError

from .base import Runner

BACKENDS = ("torch", "torch-bf16", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "ov-cpu", "trt")
# Which file each backend runs: a run directory, an ONNX file, or a TensorRT engine.
ARTIFACT = {
    "torch": "run", "torch-bf16": "run", "torch-cuda": "run",
    "ort-cpu": "onnx", "ort-cuda": "onnx", "ort-trt": "onnx", "ov-cpu": "onnx",
    "trt": "engine",
}  # fmt: skip


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run on this machine, or None if it can."""
    if backend not in BACKENDS:
        raise RuntimeBackendError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend.startswith("torch"):
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed (pip install 'abrl[train]')"
        return _cuda_reason() if backend == "torch-cuda" else None
    if backend == "ov-cpu":
        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed (pip install 'abrl[openvino]')"
        return None
    if backend.startswith("ort-"):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install 'abrl[runtime]' or 'abrl[gpu]')"
        import onnxruntime

        from .onnxruntime import PROVIDERS

        wanted = PROVIDERS[backend][0]
        if wanted not in onnxruntime.get_available_providers():
            return (
                f"this onnxruntime has no {wanted} (pip install 'abrl[gpu]' on an NVIDIA machine)"
            )
        return None
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'abrl[gpu]' on an NVIDIA machine)"
    return _cuda_reason()


def _cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "needs PyTorch with CUDA to find the GPU"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device is visible"


def make_runner(
    backend: str,
    path: str | Path,
    *,
    threads: int | None = None,
    compile: bool = False,
    spinning: bool = True,
    ov_precision: str = "auto",
) -> Runner:
    """The (unopened) runner of ``path`` on ``backend``; ``spinning`` is ONNX Runtime's,
    ``ov_precision`` OpenVINO's inference precision ("auto": OpenVINO's own choice)."""
    if ARTIFACT.get(backend) == "run":
        from .pytorch import TorchRunner

        device = "cuda" if backend == "torch-cuda" else "cpu"
        return TorchRunner(path, device=device, compile=compile, threads=threads,
                           bf16=backend == "torch-bf16")  # fmt: skip
    if backend == "ov-cpu":
        from .openvino import OvRunner

        return OvRunner(path, precision=ov_precision, threads=threads)
    if ARTIFACT.get(backend) == "onnx":
        from .onnxruntime import OrtRunner

        return OrtRunner(path, backend, threads=threads, spinning=spinning)
    if backend == "trt":
        from .tensorrt import TrtRunner

        return TrtRunner(path)
    raise RuntimeBackendError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
