"""The CPU this process runs on: its model and the instruction-set flags that decide which
runtime and precision are fastest (AVX2, AVX-512 VNNI, bf16, AMX). Torch-free, Linux /proc."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags that change which deployment path wins: int8 dot products (VNNI; on Arm dot product and
# i8mm), bf16 (AVX-512 BF16, AMX; Arm bf16) and the vector width (AVX2/AVX-512; Arm SVE).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
         "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")  # fmt: skip
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # without one, bf16 is emulated (slower)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    if info.get("model name"):
        return info["model name"]
    if info.get("CPU part"):  # Arm: no model name; implementer and part identify the core
        return f"Arm implementer {info.get('CPU implementer')} part {info['CPU part']}"
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of ``FLAGS`` this CPU has, in ``FLAGS`` order (x86 "flags", Arm "Features")."""
    info = _cpuinfo()
    present = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in FLAGS if f in present]


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs the driver lists (torch-free: /proc/driver/nvidia), by model name."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            lines = info.read_text().splitlines()
        except OSError:
            continue
        names += [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model:")]
    return names


def has_bf16() -> bool:
    return any(f in cpu_flags() for f in BF16_FLAGS)


def signature() -> dict[str, object]:
    """What a measured choice of runtime depends on: the CPU model, its relevant flags, and the
    GPUs (a choice measured on the CPU does not apply where a GPU could serve)."""
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "gpus": nvidia_gpus()}
