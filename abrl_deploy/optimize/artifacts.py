"""The ONNX files ``abrl optimize`` times: the run's own exports when they match its checkpoint
(so a second run, or one after ``make demo``'s exports, does not export again), otherwise
exported now with ``abrl export``'s checks. A variant that fails its checks is skipped, not fatal.
"""

from __future__ import annotations

from pathlib import Path

from abrl_deploy.artifacts import ONNX
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, ExportError, first_line
from abrl_deploy.progress import Progress

from .spec import OptimizeSpec


def onnx_card(path: Path) -> ModelCard | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return ModelCard.from_onnx_metadata({p.key: p.value for p in model.metadata_props})


def stale_reason(path: Path, run_card: ModelCard, precision: str) -> str | None:
    """Why the file at ``path`` is not this run's ``precision`` export for CPUs, or None."""
    card = onnx_card(path)
    if card is None:
        return "it has no abrl model card"
    if card.checkpoint_sha256 != run_card.checkpoint_sha256:
        return "it was exported from another checkpoint"
    if card.export.get("precision") != precision:
        return f"it is a {card.export.get('precision')} file"
    if precision == "int8" and card.export.get("int8", {}).get("form") != "cpu":
        return f"its INT8 form is {card.export.get('int8', {}).get('form')!r}, not the CPU form"
    return None


def ensure_files(
    spec: OptimizeSpec, run_card: ModelCard, progress: Progress
) -> tuple[dict[str, Path], list[str], list[dict[str, str]]]:
    """(precision -> file, what was reused or exported, the variants that failed export)."""
    from abrl_deploy.export import ExportSpec, export

    files, notes, failed = {}, [], []
    for i, precision in enumerate(spec.precisions):
        path = Path(spec.run_dir) / ONNX[precision]
        stale = stale_reason(path, run_card, precision) if path.is_file() else None
        if path.is_file() and stale is None:
            files[precision] = path
            notes.append(f"reused {path} (this checkpoint's {precision} export)")
            continue
        if stale and not spec.force:
            raise ConfigError(
                f"{path} is not this run's {precision} export for CPUs: {stale}; pass --force "
                f"to export it again"
            )
        progress(f"exporting the {precision} file", i / len(spec.precisions))
        try:
            result = export(ExportSpec(run_dir=Path(spec.run_dir), precision=precision,
                                       data_dir=spec.data_dir, force=spec.force))  # fmt: skip
        except ExportError as exc:
            failed.append({"candidate": f"{precision} file", "reason": first_line(exc, 300)})
            continue
        files[precision] = result.path
        notes.append(f"exported {result.path} ({precision}, verified against PyTorch)")
    return files, notes, failed
