"""Which compute precision and memory format a training run uses on the machine it runs on.

``auto`` picks bf16 autocast where the hardware runs bf16 natively (CUDA devices that support it,
CPUs with avx512_bf16 or amx_bf16) and fp32 elsewhere: without those instructions bf16 is
emulated and slower than fp32. Only the encoder runs under autocast; the head maths (inner solve,
linear solve, penalty, refit) and evaluation stay fp32 (docs: the method's decision 9).
channels_last is on with bf16 only: measured on this project's CPU it made bf16 steps faster
(benchmarks/train_speed.py), and leaving fp32 contiguous keeps ``--precision fp32`` runs
bit-identical to the runs made before this option existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abrl_deploy import machine
from abrl_deploy.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    """What ran: ``dtype`` is "bf16" or "fp32"; ``reason`` says why, in the card's words."""

    dtype: str
    reason: str
    channels_last: bool
    channels_last_reason: str

    @property
    def autocast(self) -> bool:
        return self.dtype == "bf16"

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.dtype,
            "precision_reason": self.reason,
            "channels_last": self.channels_last,
            "channels_last_reason": self.channels_last_reason,
        }


def choose_precision(
    requested: str,
    device_type: str,
    *,
    cpu_flags: list[str] | None = None,
    cuda_bf16: bool = False,
    channels_last: bool | None = None,
) -> Precision:
    """Resolve ``requested`` (auto, fp32 or bf16) for ``device_type`` (cpu or cuda).

    ``cpu_flags`` defaults to this CPU's (abrl_deploy.machine); ``cuda_bf16`` says whether the
    CUDA device runs bf16 (torch.cuda.is_bf16_supported()). Torch-free, so tests can feed any CPU.
    """
    flags = machine.cpu_flags() if cpu_flags is None else cpu_flags
    cpu_bf16 = [f for f in machine.BF16_FLAGS if f in flags]
    if requested == "fp32":
        dtype, reason = "fp32", "--precision fp32"
    elif requested == "bf16":
        if device_type == "cuda" and not cuda_bf16:
            raise ConfigError(
                "--precision bf16: this CUDA device does not support bf16; use --precision fp32"
            )
        dtype, reason = "bf16", "--precision bf16"
        if device_type == "cpu" and not cpu_bf16:
            reason += " (this CPU has no bf16 instructions: emulated, likely slower than fp32)"
    elif requested == "auto":
        dtype, reason = _auto(device_type, cpu_bf16, cuda_bf16)
    else:
        raise ConfigError(f"precision={requested!r}, expected one of auto, fp32, bf16")
    if channels_last is None:
        cl = dtype == "bf16"
        cl_reason = "auto: with bf16 (measured faster)" if cl else "auto: fp32 stays contiguous"
    else:
        cl, cl_reason = channels_last, "--channels-last" if channels_last else "--no-channels-last"
    return Precision(dtype, reason, cl, cl_reason)


def _auto(device_type: str, cpu_bf16: list[str], cuda_bf16: bool) -> tuple[str, str]:
    if device_type == "cuda":
        if cuda_bf16:
            return "bf16", "auto: the CUDA device supports bf16"
        return "fp32", "auto: the CUDA device does not support bf16"
    if cpu_bf16:
        return "bf16", f"auto: the CPU has {', '.join(cpu_bf16)}"
    return "fp32", "auto: the CPU has no bf16 instructions (avx512_bf16, amx_bf16 or bf16)"


def resolve(cfg_precision: str, device: Any, channels_last: bool | None) -> Precision:
    """``choose_precision`` for a torch device, reading the CUDA device's bf16 support."""
    cuda_bf16 = False
    if device.type == "cuda":
        import torch

        cuda_bf16 = torch.cuda.is_bf16_supported()
    return choose_precision(
        cfg_precision, device.type, cuda_bf16=cuda_bf16, channels_last=channels_last
    )
