"""``export()``: the one entry point, above both exporters — a Triton repository
(``triton.py``) or one file (``api.export_file``)."""

from __future__ import annotations

from .spec import ExportResult, ExportSpec


def export(spec: ExportSpec) -> ExportResult:
    """Export ``spec.run_dir`` as ``spec.format`` says; every artifact is verified before it is
    written under its final name."""
    if spec.format == "triton":
        from .triton import export_triton

        return export_triton(spec)
    from .api import export_file

    return export_file(spec)
