"""Where a bench ran: CPU, threads, GPU, library versions — recorded in every report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

from abrl_deploy.machine import cpu_flags, cpu_model

LIBRARIES = ("abrl", "numpy", "scipy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu",
             "tensorrt")  # fmt: skip


def environment() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gpu": gpu_name(),
        "libraries": {name: _version(name) for name in LIBRARIES if _version(name)},
        "thread_env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },  # fmt: skip
    }


def gpu_name() -> str | None:
    """The CUDA device's name via torch, if torch is already loaded (no import just for this)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
