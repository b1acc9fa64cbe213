"""The ONNX files ``abrl optimize`` times: the run's own exports when they match its checkpoint
(so a second run, or one after ``make demo``'s exports, does not export again), otherwise
exported now with ``abrl export``'s checks. A variant that fails its checks is skipped, not fatal.
"""

from __future__ import annotations

from pathlib import Path

from abrl_deploy.errors import ExportError, first_line
from abrl_deploy.export.ensure import ensure_onnx
from abrl_deploy.progress import Progress

from .spec import OptimizeSpec


def ensure_files(
    spec: OptimizeSpec, progress: Progress
) -> tuple[dict[str, Path], list[str], list[dict[str, str]]]:
    """(precision -> file, what was reused or exported, the variants that failed export)."""
    files, notes, failed = {}, [], []
    for i, precision in enumerate(spec.precisions):
        progress(f"the {precision} file: reusing or exporting it", i / len(spec.precisions))
        try:
            # never force: --force is for optimize's own outputs, not for a file that abrl
            # export wrote (a TensorRT-form model.int8.onnx would be lost)
            path, exported = ensure_onnx(spec.run_dir, precision, data_dir=spec.data_dir)
        except ExportError as exc:
            failed.append({"candidate": f"{precision} file", "reason": first_line(exc, 300)})
            continue
        files[precision] = path
        notes.append(f"exported {path} ({precision}, verified against PyTorch)" if exported
                     else f"reused {path} (this checkpoint's {precision} export)")  # fmt: skip
    return files, notes, failed
