"""TensorRT import, CUDA check and logger, shared by the engine builder and the engine runner.

Here, in the runtime package, because the dependency runs export → runtime, never the other way.
Nothing here imports TensorRT or torch until a function is called.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from abrl_deploy.errors import DependencyError, RuntimeBackendError

log = logging.getLogger(__name__)


def require_tensorrt() -> ModuleType:
    """Import TensorRT and check that a CUDA device is visible.

    Raises:
        DependencyError: TensorRT is not installed.
        RuntimeBackendError: no CUDA device can be used.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DependencyError(
            "TensorRT is not installed; on a machine with an NVIDIA GPU and driver run "
            "pip install 'abrl[gpu]'"
        ) from exc
    _require_cuda(trt)
    return trt


def _require_cuda(trt: ModuleType) -> None:
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return
    # A CPU-only torch wheel says False even beside a GPU, so ask TensorRT itself: creating a
    # Builder initialises CUDA and fails (pybind raises TypeError on a null object) without one.
    try:
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:
        torch_says = "" if torch is None else "torch.cuda.is_available() is False and "
        raise RuntimeBackendError(
            f"TensorRT needs a CUDA device and none is usable ({torch_says}TensorRT said: "
            f"{exc}); check nvidia-smi, the NVIDIA driver and CUDA_VISIBLE_DEVICES"
        ) from exc


def make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps the errors, for one message if a build or a run fails."""
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()
