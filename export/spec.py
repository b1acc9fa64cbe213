"""ExportSpec: the one frozen configuration of ``abrl export``; results are small records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError

FORMATS = ("onnx", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUTS = ("logits", "features")
DEFAULT_NAMES = {
    ("onnx", "fp32"): "model.onnx",
    ("onnx", "fp16"): "model.fp16.onnx",
    ("onnx", "int8"): "model.int8.onnx",
}


@dataclass(frozen=True)
class ExportSpec:
    run_dir: Path
    format: str = "onnx"
    precision: str = "fp32"
    out: Path | None = None
    opset: int = 18
    batch_range: tuple[int, int, int] = (1, 64, 256)
    outputs: tuple[str, ...] = ("logits",)
    calibration_images: int = 256
    validation_images: int = 256
    data_dir: str | None = None  # where the run's dataset is now, if it moved
    force: bool = False

    def __post_init__(self) -> None:
        p = []
        if self.format not in FORMATS:
            p.append(f"format={self.format!r}, expected one of {FORMATS}")
        if self.precision not in PRECISIONS:
            p.append(f"precision={self.precision!r}, expected one of {PRECISIONS}")
        if not self.outputs or self.outputs[0] != "logits" or not set(self.outputs) <= set(OUTPUTS):
            p.append(f"outputs={','.join(self.outputs)}, expected logits or logits,features")
        if not 17 <= self.opset <= 23:
            p.append(f"opset={self.opset}, expected 17..23")
        lo, opt, hi = self.batch_range
        if not 1 <= lo <= opt <= hi:
            p.append(f"batch_range={self.batch_range}, expected MIN<=OPT<=MAX, all >= 1")
        if self.calibration_images < 1 or self.validation_images < 2:
            p.append("calibration_images must be >= 1 and validation_images >= 2")
        if p:
            raise ConfigError("invalid export options: " + "; ".join(p))

    @property
    def onnx_path(self) -> Path:
        """The ONNX file of this precision (for trt: the one the engine is built from)."""
        if self.format == "onnx" and self.out is not None:
            return Path(self.out)
        return Path(self.run_dir) / DEFAULT_NAMES[("onnx", self.precision)]

    @property
    def engine_path(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run_dir) / "model.engine"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    precision: str
    exporter: str  # which rung of the ladder won: "dynamo" or "torchscript"
    validation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
