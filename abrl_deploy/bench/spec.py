"""BenchSpec: the one frozen configuration of ``abrl bench``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError
from abrl_deploy.runtime.backends import BACKENDS

# Numpy-free: the CLI reads these dataclasses' defaults for its --help (one place for each).
TIMER = "time.perf_counter_ns around one call: host input to host outputs, synchronised"


@dataclass(frozen=True)
class Protocol:
    warmup: int = 10
    min_iters: int = 50
    min_seconds: float = 5.0
    block: int = 5  # calls of one model before switching to the next
    min_blocks: int = 10  # the bootstrap resamples blocks; fewer gives a meaningless interval

    def __post_init__(self) -> None:
        p = []
        if self.warmup < 0:
            p.append(f"--warmup {self.warmup} is negative")
        if self.min_iters < 2:
            p.append(f"--min-iters {self.min_iters}: need at least 2 calls for a spread")
        if self.min_seconds < 0:
            p.append(f"--min-seconds {self.min_seconds} is negative")
        if self.block < 1 or self.min_blocks < 3:
            p.append(f"--block {self.block} must be >= 1 (and min_blocks >= 3)")
        if p:
            raise ConfigError("invalid timing protocol: " + "; ".join(p))

    def to_dict(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup, "min_iters": self.min_iters, "min_seconds": self.min_seconds,
            "block": self.block, "min_blocks": self.min_blocks, "timer": TIMER,
            "schedule": "interleaved blocks per backend, order reversed every other round",
        }  # fmt: skip


@dataclass(frozen=True)
class ModelFacts:
    """What a card would say, given on the command line for a model without one."""

    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    layout: str | None = None  # "NCHW" or "NHWC"
    dataset: str | None = None
    resize: int | None = None  # shorter side before the centre crop; 0: no resize
    interpolation: str | None = None
    scale: str | None = None  # "1/255" (pixels in [0, 1]) or "1" (0-255)
    channel_order: str | None = None  # "RGB" or "BGR"

    def __post_init__(self) -> None:
        from abrl_deploy.preprocess import CHANNEL_ORDERS, INTERPOLATIONS, SCALES

        p = []
        if self.resize is not None and self.resize < 0:
            p.append(f"--resize {self.resize} must be >= 0 (0: no resize)")
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            p.append(
                f"--interpolation {self.interpolation}: use one of {', '.join(INTERPOLATIONS)}"
            )
        if self.scale is not None and self.scale not in SCALES:
            p.append(f"--scale {self.scale}: use 1/255 (pixels in [0, 1]) or 1 (0-255)")
        if self.channel_order is not None and self.channel_order not in CHANNEL_ORDERS:
            p.append(f"--channel-order {self.channel_order.lower()}: use rgb or bgr")
        if p:
            raise ConfigError("; ".join(p))


@dataclass(frozen=True)
class BenchSpec:
    models: tuple[Path, ...]
    baseline: Path | None = None
    backends: tuple[str, ...] | None = None  # None: every backend that can run here
    batch: int = 64
    protocol: Protocol = field(default_factory=Protocol)
    threads: int | None = None
    compile: bool = False  # torch.compile the PyTorch backends
    ov_precision: str = "auto"  # OpenVINO's inference precision; auto: its own (bf16 on AMX)
    facts: ModelFacts = field(default_factory=ModelFacts)
    data_dir: str | None = None
    limit: int | None = None  # test images for accuracy; None: the whole test split
    claim: float = 0.15  # the paper's claimed latency reduction
    confidence: float = 0.95

    def __post_init__(self) -> None:
        p = []
        if not self.models:
            p.append("give at least one MODEL")
        if self.batch < 1:
            p.append(f"--batch {self.batch} must be >= 1")
        if self.threads is not None and self.threads < 1:
            p.append(f"--threads {self.threads} must be >= 1")
        if self.limit is not None and self.limit < 1:
            p.append(f"--limit {self.limit} must be >= 1")
        if not 0 <= self.claim < 1:
            p.append(f"--claim {self.claim} must be a reduction in [0, 1), e.g. 0.15 for 15%")
        if not 0.5 <= self.confidence < 1:
            p.append(f"confidence {self.confidence} must be in [0.5, 1)")
        unknown = [b for b in self.backends or () if b not in BACKENDS]
        if unknown:
            p.append(f"unknown backend {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
        from abrl_deploy.runtime.openvino import OV_PRECISIONS

        if self.ov_precision not in OV_PRECISIONS:
            p.append(f"--ov-precision {self.ov_precision}: use {', '.join(OV_PRECISIONS)}")
        if self.backends is not None and not self.backends:
            p.append("--backend is empty")
        if p:
            raise ConfigError("invalid bench options: " + "; ".join(p))
