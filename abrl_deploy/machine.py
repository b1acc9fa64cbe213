"""The CPU this process runs on: its model and the instruction-set flags that decide which
runtime and precision are fastest (AVX2, AVX-512 VNNI, bf16, AMX). Torch-free, Linux /proc."""

from __future__ import annotations

import functools
import platform

# The flags that change which deployment path wins: int8 dot products (VNNI), bf16 (AVX-512 BF16,
# AMX) and the vector width.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # without one of these, bf16 is emulated (slower)


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
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of ``FLAGS`` this CPU has, in ``FLAGS`` order."""
    present = set(_cpuinfo().get("flags", "").split())
    return [f for f in FLAGS if f in present]


def has_bf16() -> bool:
    return any(f in cpu_flags() for f in BF16_FLAGS)


def signature() -> dict[str, object]:
    """What a measured choice of runtime depends on: the CPU model and its relevant flags."""
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags()}
