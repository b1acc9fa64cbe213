"""PyTorch runner: the trained classifier of a run directory, eager or ``torch.compile``d, in
float32 or (``torch-bf16``) under CPU bf16 autocast: a precision change whose accuracy the bench
reports beside its speed.

The reference every other backend is compared with. On CUDA the timed call includes the copies
to and from the device and ends in a synchronisation, so it measures what the other runners do;
the device time alone (CUDA events) is kept as ``last_device_ms``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.errors import DependencyError, RuntimeBackendError, first_line

from .base import InputSpec, Runner


def import_torch():
    try:
        import torch
    except ImportError:
        raise DependencyError("PyTorch is not installed; run pip install 'abrl[train]'") from None
    return torch


class TorchRunner(Runner):
    """The classifier of ``run_dir`` on ``device`` ("cpu" or "cuda")."""

    backend = "torch"

    def __init__(
        self,
        run_dir: str | Path,
        device: str = "cpu",
        compile: bool = False,
        threads: int | None = None,
        bf16: bool = False,
    ):
        super().__init__()
        self.bf16 = bf16
        if bf16:
            self.backend = "torch-bf16"
        self.run_dir, self.device, self.compile, self.threads = (
            Path(run_dir),
            device,
            compile,
            threads,
        )
        self.model = None
        self.card = None
        self.last_device_ms: float | None = None

    def open_impl(self) -> None:
        torch = import_torch()
        from abrl_deploy.training.checkpoint import load_classifier

        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeBackendError(
                "torch on cuda: torch.cuda.is_available() is False; check nvidia-smi and that "
                "the installed torch wheel is a CUDA build"
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        model, self.card = load_classifier(self.run_dir)
        model = model.to(self.device).eval()
        if self.compile:
            try:
                model = torch.compile(model)
            except Exception as exc:
                raise RuntimeBackendError(f"torch.compile failed: {first_line(exc)}") from None
        self.model = model

    def close_impl(self) -> None:
        self.model = None

    def describe(self) -> dict[str, Any]:
        torch = import_torch()
        info = {
            "backend": self.backend,
            "device": self.device,
            "compile": self.compile,
            "threads": torch.get_num_threads(),
            "precision": "bf16 autocast" if self.bf16 else "fp32",
        }
        if self.device == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
        return info

    @property
    def input_spec(self) -> InputSpec:
        size = self.card.input_size
        return InputSpec("images", (None, 3, size, size), np.dtype(np.float32))

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("logits",)

    def stage_impl(self, batch: np.ndarray):
        torch = import_torch()
        return torch.from_numpy(np.ascontiguousarray(batch))

    def infer_impl(self, staged) -> dict[str, np.ndarray]:
        torch = import_torch()
        try:
            with torch.inference_mode():
                if self.device == "cpu":
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                        return {"logits": self.model(staged).float().numpy()}
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                logits = self.model(staged.to(self.device, non_blocking=False))
                end.record()
                out = logits.cpu().numpy()  # the copy back synchronises the stream
                end.synchronize()
                self.last_device_ms = start.elapsed_time(end)
                return {"logits": out}
        except Exception as exc:
            raise RuntimeBackendError(
                f"torch failed on {self.run_dir}: {first_line(exc)}"
            ) from None
