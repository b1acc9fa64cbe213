"""A Triton Inference Server model repository from a run: the verified export plus its config.

Layout written under the repository ``REPO``::

    REPO/<name>/config.pbtxt     platform, batching, input/output names, types and shapes
    REPO/<name>/labels.txt       one class name per line: the logits' label_filename
    REPO/<name>/card.json        the model card, with what export verified
    REPO/<name>/1/model.onnx     the file export_file() verified (model.plan for tensorrt_plan)

The card is a file rather than ``parameters`` in config.pbtxt: Triton hands ``parameters`` to the
backend as options, and a kilobytes-long escaped JSON string there would be unreadable; a file in
the model directory is ignored by Triton and read by people and tools like any other card.json.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from abrl_deploy.artifacts import CARD, sidecar
from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, DependencyError, ExportError, first_line

from .spec import ExportResult, ExportSpec

LABELS = "labels.txt"
MODEL_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
_PB2 = "tritonclient.grpc.model_config_pb2"


def export_triton(spec: ExportSpec) -> ExportResult:
    """Export the file with ``export_file()``, assemble the model directory beside its final
    place, then rename.

    The whole model directory appears at once: a Triton server polling the repository never sees
    a config without its model file.
    """
    from .api import export_file

    t0 = time.perf_counter()
    if spec.triton_platform == "tensorrt_plan":
        from .tensorrt import require_tensorrt

        require_tensorrt()  # before any work: exit 2 with the install hint
    repo, name = spec.triton_repo, spec.triton_name
    _refuse_existing(repo / name, spec.force)
    if repo.exists() and not repo.is_dir():
        raise ConfigError(f"--out {repo} is a file; a Triton model repository is a directory")
    repo.mkdir(parents=True, exist_ok=True)
    # In the repository itself, so that the final rename never crosses a filesystem.
    with tempfile.TemporaryDirectory(dir=repo, prefix=f".{name}.abrl-") as tmp:
        tmp_dir = Path(tmp)
        model_file = MODEL_FILES[spec.triton_platform]
        inner = dataclasses.replace(
            spec, format="trt" if spec.triton_platform == "tensorrt_plan" else "onnx",
            out=tmp_dir / "build" / model_file,
        )  # fmt: skip
        result = export_file(inner)
        card, staged = _verified_card(result.path), tmp_dir / name
        (staged / "1").mkdir(parents=True)
        os.replace(result.path, staged / "1" / model_file)
        warnings = _write_model_dir(staged, spec, card)
        _refuse_existing(repo / name, spec.force)  # again: the export took a while
        _install(staged, repo / name, tmp_dir)
    final = repo / name
    extra = {"platform": spec.triton_platform, "model_file": str(final / "1" / model_file),
             "config": str(final / "config.pbtxt"), "warnings": warnings}  # fmt: skip
    return ExportResult(final, "triton", spec.precision, result.exporter, result.validation,
                        time.perf_counter() - t0, extra)  # fmt: skip


def _verified_card(built: Path) -> ModelCard:
    """The card export_file() wrote: in the ONNX file's metadata, or in the engine's sidecar."""
    if built.suffix == ".onnx":
        card = ModelCard.from_onnx_file(built)
        if card is None:
            raise ExportError(f"{built} has no model card in its metadata")
        return card
    return ModelCard.load(sidecar(built))


def _write_model_dir(model_dir: Path, spec: ExportSpec, card: ModelCard) -> list[str]:
    """config.pbtxt (checked against Triton's schema where it is installed), labels, card."""
    bad = [n for n in card.class_names if "\n" in n or "\r" in n]
    if bad:
        raise ExportError(f"class names {bad} hold line breaks; {LABELS} has one name per line")
    text = config_text(spec, card)
    warnings = []
    try:
        check_config(text)
    except DependencyError as exc:
        warnings.append(f"config.pbtxt was not validated: {exc}")
    _, opt, hi = spec.batch_range
    triton = {
        "name": spec.triton_name, "platform": spec.triton_platform,
        "model_file": f"1/{MODEL_FILES[spec.triton_platform]}", "max_batch_size": hi,
        "preferred_batch_size": opt, "max_queue_delay_us": spec.max_queue_delay_us,
        "config_validated": not warnings,
    }  # fmt: skip
    atomic_write_text(model_dir / "config.pbtxt", text)
    atomic_write_text(model_dir / LABELS, "".join(f"{n}\n" for n in card.class_names))
    card = card.replace(export=card.export | {"triton": triton})
    atomic_write_text(model_dir / CARD, card.to_json() + "\n")
    return warnings


def config_text(spec: ExportSpec, card: ModelCard) -> str:
    """config.pbtxt for ``spec``: batch axis implied by max_batch_size, FP32 in and out.

    Every precision keeps float32 inputs and outputs (FP16 casts inside the graph, INT8 quantizes
    and dequantizes inside it), so the types do not depend on the precision.
    """
    _, opt, hi = spec.batch_range
    size = card.input_size
    dims = {"logits": card.num_classes, "features": card.feature_dim or -1}  # -1: variable
    outputs = ",\n".join(
        _tensor(o, [dims[o]], f'    label_filename: "{LABELS}"\n' if o == "logits" else "")
        for o in spec.outputs
    )
    return (
        "# Written by abrl export; the model card is card.json beside this file.\n"
        f'name: "{spec.triton_name}"\nplatform: "{spec.triton_platform}"\n'
        f"max_batch_size: {hi}\n"
        f"input [\n{_tensor('images', [3, size, size])}\n]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {opt} ]\n"
        f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}\n}}\n"
    )


def _tensor(name: str, dims: list[int], extra: str = "") -> str:
    shape = ", ".join(str(d) for d in dims)
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {shape} ]\n{extra}  }}'


def check_config(text: str):
    """Parse ``text`` into Triton's own ``ModelConfig``; return the message.

    Raises:
        DependencyError: tritonclient, which ships the schema, is not installed.
        ExportError: the text does not parse (an unknown field, a wrong type or enum value).
    """
    from google.protobuf import text_format

    message = load_model_config()()
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ExportError(f"config.pbtxt is not a valid Triton ModelConfig: {exc}") from None


@functools.cache
def load_model_config() -> type:
    """Triton's ``inference.ModelConfig`` message class, generated code shipped in tritonclient.

    ``tritonclient.grpc``'s ``__init__`` needs grpcio (and grpcio's protobuf pin), which the schema
    does not, so the generated module is loaded from its file unless it was imported already.
    """
    module = sys.modules.get(_PB2)
    if module is None:
        spec = importlib.util.find_spec("tritonclient")
        where = spec.submodule_search_locations if spec else None
        path = Path(where[0]) / "grpc" / "model_config_pb2.py" if where else None
        if path is None or not path.is_file():
            raise DependencyError(
                "tritonclient, whose schema config.pbtxt is checked against, is not installed: "
                "pip install tritonclient"
            )
        file_spec = importlib.util.spec_from_file_location(_PB2, path)
        module = importlib.util.module_from_spec(file_spec)
        try:
            file_spec.loader.exec_module(module)
        except Exception as exc:  # e.g. generated for a newer protobuf than the installed one
            raise DependencyError(f"cannot load {path}: {first_line(exc)}") from exc
    return module.ModelConfig


def _refuse_existing(model_dir: Path, force: bool) -> None:
    if model_dir.exists() and not force:
        raise ConfigError(f"{model_dir} exists; pass --force to replace it")


def _install(staged: Path, final: Path, tmp_dir: Path) -> None:
    """Rename ``staged`` to ``final``; an old ``final`` is first moved aside into ``tmp_dir``.

    A non-empty directory cannot be replaced by one rename, so with --force there is a moment
    between the two renames when ``final`` is absent; it is never half written.
    """
    if final.exists():
        os.replace(final, tmp_dir / "replaced")
    os.replace(staged, final)
