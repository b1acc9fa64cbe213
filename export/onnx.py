"""The export ladder: torch.onnx (dynamo) first, the TorchScript exporter if any check fails.

Each rung writes to a temporary file, passes onnx.checker's full check and the parity checks, and
only then is renamed into place with the model card in ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from torch import nn

from abrl_deploy.atomic import atomic_write_bytes
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ExportError, first_line

from .validate import ValidationReport

LADDER = ("dynamo", "torchscript")


class ExportModule(nn.Module):
    """Encoder + head as one graph: images -> logits (and the features on request)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.with_features = model, "features" in outputs

    def forward(self, images: torch.Tensor):
        z = self.model.forward_features(images)
        logits = self.model.forward_head(z)
        return (logits, z) if self.with_features else logits


def trace(model: nn.Module, path: Path, exporter: str, *, size: int, opset: int, outputs) -> None:
    """Write ``model`` to ``path`` with one exporter; dynamic batch axis named N."""
    module = ExportModule(model, outputs).eval()
    example = (torch.randn(2, 3, size, size),)
    names = {"input_names": ["images"], "output_names": list(outputs), "opset_version": opset}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters are chatty about things we check anyway
        if exporter == "dynamo":
            dims = {"images": {0: torch.export.Dim("N", min=1, max=65536)}}
            torch.onnx.export(
                module, example, str(path), dynamo=True, dynamic_shapes=dims,
                external_data=False, verbose=False, **names,
            )  # fmt: skip
        else:
            axes = {name: {0: "N"} for name in ("images", *outputs)}
            torch.onnx.export(module, example, str(path), dynamo=False, dynamic_axes=axes, **names)


def embed_card(path: Path, card: ModelCard, dst: Path | None = None) -> None:
    """Replace the card in ``path``'s metadata_props and write it (atomically) to ``dst``."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(card.to_onnx_metadata())
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "abrl", card.versions.get("abrl", "")
    atomic_write_bytes(dst or path, model.SerializeToString())


def run_ladder(
    model: nn.Module,
    tmp_dir: Path,
    validate: Callable[[Path], ValidationReport],
    *,
    size: int,
    opset: int,
    outputs: tuple[str, ...],
) -> tuple[Path, str, ValidationReport]:
    """Try each exporter; return the first file that passes every check, or raise listing all."""
    failures = []
    for exporter in LADDER:
        path = tmp_dir / f"{exporter}.onnx"
        try:
            trace(model, path, exporter, size=size, opset=opset, outputs=outputs)
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:  # any exporter failure is one rung's failure, reported below
            first = first_line(exc)
            failures.append(f"{exporter}: export failed ({type(exc).__name__}: {first})")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        try:
            report = validate(path)
        except Exception as exc:  # e.g. ONNX Runtime refusing the file: this rung failed
            first = first_line(exc)
            failures.append(f"{exporter}: ONNX Runtime could not run it ({first})")
            continue
        if report.passed:
            return path, exporter, report
        failures.append(f"{exporter}: " + "; ".join(report.failures()))
    raise ExportError("ONNX export failed on every path: " + " | ".join(failures))
