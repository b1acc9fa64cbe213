"""BenchSpec: the one frozen configuration of ``abrl bench``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from abrl_deploy.errors import ConfigError
from abrl_deploy.runtime.backends import BACKENDS
from abrl_deploy.runtime.openvino import OV_PRECISIONS

from .models import ModelFacts
from .protocol import Protocol


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
        if self.ov_precision not in OV_PRECISIONS:
            p.append(f"--ov-precision {self.ov_precision}: use {', '.join(OV_PRECISIONS)}")
        if self.backends is not None and not self.backends:
            p.append("--backend is empty")
        if p:
            raise ConfigError("invalid bench options: " + "; ".join(p))
