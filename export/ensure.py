"""A run's ONNX file, exported only when it is missing: ``abrl bench`` (a run directory without
``model.onnx``), ``abrl reproduce`` (its latency claim) and ``abrl optimize`` (its variant files)
share this one rule. Torch-free until an export is needed.

A file already there is reused only if its card says it is this checkpoint's export in this
precision (and, for INT8, the CPU form); anything else is refused unless ``force``.
"""

from __future__ import annotations

from pathlib import Path

from abrl_deploy.artifacts import CARD, ONNX
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError

from .spec import ExportSpec


def stale_reason(path: Path, run_card: ModelCard, precision: str) -> str | None:
    """Why the file at ``path`` is not this run's ``precision`` export for CPUs, or None."""
    card = ModelCard.from_onnx_file(path)
    if card is None:
        return "it has no abrl model card"
    if card.checkpoint_sha256 != run_card.checkpoint_sha256:
        return "it was exported from another checkpoint"
    if card.export.get("precision") != precision:
        return f"it is a {card.export.get('precision')} file"
    if precision == "int8" and card.export.get("int8", {}).get("form") != "cpu":
        return f"its INT8 form is {card.export.get('int8', {}).get('form')!r}, not the CPU form"
    return None


def ensure_onnx(
    run_dir: str | Path, precision: str = "fp32", *, data_dir: str | None = None,
    out: Path | None = None, force: bool = False,
) -> tuple[Path, bool]:  # fmt: skip
    """The run's ``precision`` ONNX file (at ``out``, default the run's own name for it) and
    whether it was exported now; ExportError when the export fails its checks."""
    run_dir = Path(run_dir)
    path = Path(out) if out is not None else run_dir / ONNX[precision]
    if path.is_file():
        stale = stale_reason(path, ModelCard.load(run_dir / CARD), precision)
        if stale is None:
            return path, False
        if not force:
            raise ConfigError(
                f"{path} is not this run's {precision} export for CPUs: {stale}; export it "
                f"again with abrl export {run_dir} --precision {precision} --force (this "
                "overwrites it), or move it away"
            )
    from .dispatch import export

    spec = ExportSpec(run_dir=run_dir, precision=precision, out=out, data_dir=data_dir,
                      force=force)  # fmt: skip
    return export(spec).path, True
