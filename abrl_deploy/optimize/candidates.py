"""The variants ``abrl optimize`` times: which file, on which runtime, in which precision.

PyTorch eager fp32 is the reference (accuracy and speed-up); the PyTorch bf16 row is measured
for comparison but never shipped (a service embeds an ONNX file). OpenVINO is asked for an
explicit precision, never its own default, so that every label says what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from abrl_deploy.machine import BF16_FLAGS, has_bf16
from abrl_deploy.runtime.backends import unavailable_reason

from .spec import OptimizeSpec

REFERENCE = "torch eager fp32"


@dataclass(frozen=True)
class Candidate:
    label: str
    backend: str  # a runtime.backends name
    file: str  # "run" (the checkpoint) or the ONNX file's precision: fp32, fp16, int8
    ov_precision: str = "auto"  # OpenVINO's inference precision hint (ov-cpu only)
    shippable: bool = True  # an ONNX file a service can embed

    def artifact(self, run_dir: Path, files: dict[str, Path]) -> Path:
        return Path(run_dir) if self.file == "run" else files[self.file]


def bf16_decision(spec: OptimizeSpec) -> tuple[bool, str]:
    """Whether bf16 variants are timed, and why (stated in the report)."""
    if spec.bf16 == "off":
        return False, "bf16 variants off (--bf16 off)"
    if spec.bf16 == "on":
        return True, "bf16 variants on (--bf16 on)"
    if has_bf16():
        return True, "bf16 variants timed: this CPU has bf16 instructions"
    return False, (
        f"bf16 variants not timed: this CPU has none of {', '.join(BF16_FLAGS)}, so bf16 would "
        "be emulated (slower than fp32); --bf16 on times them anyway"
    )


def plan_candidates(
    spec: OptimizeSpec, files: dict[str, Path]
) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidates for the ONNX ``files`` built (precision -> path), and the skipped ones."""
    bf16, why = bf16_decision(spec)
    wanted = [Candidate(REFERENCE, "torch", "run", shippable=False)]
    if "torch-bf16" in spec.backends and bf16:
        wanted.append(Candidate("torch bf16 autocast", "torch-bf16", "run", shippable=False))
    ov = ("f32", "bf16") if bf16 else ("f32",)
    for precision in spec.precisions:
        if "ort-cpu" in spec.backends:
            wanted.append(Candidate(f"ort-cpu · {precision} file", "ort-cpu", precision))
        if "ov-cpu" in spec.backends:
            # fp32: both precisions (bf16 is OpenVINO's own default on such CPUs); on the fp16
            # and int8 files the float parts run in the fastest precision the CPU has.
            for p in ov if precision == "fp32" else ov[-1:]:
                wanted.append(Candidate(f"ov-cpu ({p}) · {precision} file", "ov-cpu", precision, p))
    candidates, skipped = [], []
    if not bf16:
        skipped.append({"candidate": "bf16 variants", "reason": why})
    for c in wanted:
        reason = unavailable_reason(c.backend)
        if reason is None and c.file != "run" and c.file not in files:
            reason = f"no {c.file} file (see the export notes)"
        if reason is None:
            candidates.append(c)
        else:
            skipped.append({"candidate": c.label, "reason": reason})
    return candidates, skipped
