"""OptimizeSpec: the one frozen configuration of ``abrl optimize``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from abrl_deploy.artifacts import DEPLOY, OPTIMIZE_REPORTS
from abrl_deploy.bench.spec import Protocol
from abrl_deploy.errors import ConfigError
from abrl_deploy.runtime.backends import CANDIDATE_BACKENDS

CANDIDATE_PRECISIONS = ("fp32", "fp16", "int8")  # the ONNX files built as candidates
BF16 = ("auto", "on", "off")


@dataclass(frozen=True)
class OptimizeSpec:
    run_dir: Path
    max_drop: float = 0.5  # top-1 points on the select images, against PyTorch fp32
    batch: int = 64
    threads: int | None = None
    precisions: tuple[str, ...] = CANDIDATE_PRECISIONS
    backends: tuple[str, ...] = CANDIDATE_BACKENDS  # where candidates run (eager: the reference)
    bf16: str = "auto"  # bf16 candidates: "auto" only where the CPU has bf16 instructions
    select_images: int | None = None  # None: the whole select half of the test split
    holdout_images: int | None = None  # None: the whole holdout half
    protocol: Protocol = field(default_factory=Protocol)
    data_dir: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        p = []
        if not 0 <= self.max_drop <= 100:
            p.append(f"--max-drop {self.max_drop}: give top-1 points between 0 and 100")
        if self.batch < 1:
            p.append(f"--batch {self.batch} must be >= 1")
        if self.threads is not None and self.threads < 1:
            p.append(f"--threads {self.threads} must be >= 1")
        for name, given, known in (("--precisions", self.precisions, CANDIDATE_PRECISIONS),
                                   ("--backends", self.backends, CANDIDATE_BACKENDS)):  # fmt: skip
            unknown = [x for x in given if x not in known]
            if unknown or not given:
                p.append(f"{name} {','.join(given)}: choose from {','.join(known)}")
        if self.bf16 not in BF16:
            p.append(f"--bf16 {self.bf16}: use auto, on or off")
        for name, n in (("--select-images", self.select_images),
                        ("--holdout-images", self.holdout_images)):  # fmt: skip
            if n is not None and n < 1:
                p.append(f"{name} {n} must be >= 1")
        if p:
            raise ConfigError("invalid optimize options: " + "; ".join(p))

    @property
    def deploy_path(self) -> Path:
        return Path(self.run_dir) / DEPLOY

    def report_path(self, kind: str) -> Path:
        return Path(self.run_dir) / OPTIMIZE_REPORTS[kind]
