"""ExportSpec: the one frozen configuration of ``abrl export``; results are small records."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abrl_deploy.artifacts import ENGINE, ONNX, TRITON_REPO
from abrl_deploy.errors import ConfigError

FORMATS = ("onnx", "trt", "triton")
FILE_PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATIONS = ("minmax", "percentile", "entropy")  # INT8 activation-range methods (quantize.py)
OUTPUTS = ("logits", "features")
TRITON_PLATFORMS = ("onnxruntime_onnx", "tensorrt_plan")
# Characters kept in a Triton model name: it is a directory name and a URL path segment.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ExportSpec:
    run_dir: Path
    format: str = "onnx"
    precision: str = "fp32"
    out: Path | None = None
    opset: int = 18
    batch_range: tuple[int, int, int] = (1, 64, 256)
    outputs: tuple[str, ...] = ("logits",)
    calibration_images: int = 512  # digits' 1,293 train images: 512 settles MinMax ranges
    calibration: str = "minmax"  # INT8 activation ranges: minmax, percentile or entropy
    validation_images: int = 256
    data_dir: str | None = None  # where the run's dataset is now, if it moved
    force: bool = False
    # format="triton" only: out is the model repository; the model goes to out/<model_name>/
    model_name: str | None = None
    triton_platform: str = "onnxruntime_onnx"
    max_queue_delay_us: int = 100

    @property
    def int8_form(self) -> str:
        """The INT8 form for this export's runtime (``quantize.INT8_FORMS``): TensorRT's for a
        TensorRT engine or a Triton TensorRT plan, the CPU's for every ONNX file. The Triton
        platform is read only for --format triton (it once leaked into --format onnx)."""
        plan = self.format == "triton" and self.triton_platform == "tensorrt_plan"
        trt = self.format == "trt" or plan
        return "trt" if trt else "cpu"

    def __post_init__(self) -> None:
        p = []
        if self.format not in FORMATS:
            p.append(f"format={self.format!r}, expected one of {FORMATS}")
        if self.precision not in FILE_PRECISIONS:
            p.append(f"precision={self.precision!r}, expected one of {FILE_PRECISIONS}")
        if not self.outputs or self.outputs[0] != "logits" or not set(self.outputs) <= set(OUTPUTS):
            p.append(f"outputs={','.join(self.outputs)}, expected logits or logits,features")
        if not 17 <= self.opset <= 23:
            p.append(f"opset={self.opset}, expected 17..23")
        lo, opt, hi = self.batch_range
        if not 1 <= lo <= opt <= hi:
            p.append(f"batch_range={self.batch_range}, expected MIN<=OPT<=MAX, all >= 1")
        if self.calibration not in CALIBRATIONS:
            p.append(f"calibration={self.calibration!r}, expected one of {CALIBRATIONS}")
        if self.calibration_images < 1 or self.validation_images < 2:
            p.append("calibration_images must be >= 1 and validation_images >= 2")
        p += self._triton_problems()
        if p:
            raise ConfigError("invalid export options: " + "; ".join(p))

    def _triton_problems(self) -> list[str]:
        p = []
        if self.triton_platform not in TRITON_PLATFORMS:
            p.append(
                f"triton_platform={self.triton_platform!r}, expected one of {TRITON_PLATFORMS}"
            )
        if self.model_name is not None and not _MODEL_NAME.fullmatch(self.model_name):
            p.append(
                f"model_name={self.model_name!r}, expected letters, digits, '_', '.' or '-', "
                "not starting with '.' or '-'"
            )
        if self.max_queue_delay_us < 0:
            p.append(f"max_queue_delay_us={self.max_queue_delay_us}, expected >= 0")
        return p

    @property
    def onnx_path(self) -> Path:
        """The ONNX file of this precision (for trt: the one the engine is built from)."""
        if self.format == "onnx" and self.out is not None:
            return Path(self.out)
        return Path(self.run_dir) / ONNX[self.precision]

    @property
    def engine_path(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run_dir) / ENGINE

    @property
    def triton_repo(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.run_dir) / TRITON_REPO

    @property
    def triton_name(self) -> str:
        """``model_name``, or the run directory's name with other characters replaced by '_'."""
        if self.model_name is not None:
            return self.model_name
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(self.run_dir).resolve().name)
        return re.sub(r"^[.-]+", "", name) or "model"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    precision: str
    exporter: str  # which rung of the ladder won: "dynamo" or "torchscript"
    validation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
