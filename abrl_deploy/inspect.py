"""What an artifact is: a run directory, an ONNX file, or a TensorRT engine with its sidecar.

Torch-free: reads ONNX graphs with the ``onnx`` package; no runtime session is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abrl_deploy.artifacts import CARD, sidecar
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import AbrlError, DependencyError

_ELEM = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 7: "int64", 11: "float64"}


def describe(path: str | Path) -> dict[str, Any]:
    """A JSON-able description of ``path``; raises AbrlError for anything else."""
    path = Path(path)
    if path.is_dir():
        return _describe_run(path)
    if path.suffix == ".onnx" and path.is_file():
        return _describe_onnx(path)
    if path.name.endswith(".engine.json") or path.suffix == ".engine":
        return _describe_engine(path if path.name.endswith(".json") else sidecar(path))
    raise AbrlError(
        f"{path}: not a run directory, an .onnx file or a .engine (with its .engine.json sidecar)"
    )


def _describe_run(path: Path) -> dict[str, Any]:
    card_path = path / CARD
    if not card_path.is_file():
        raise AbrlError(f"{path} has no card.json; is it a finished abrl train run directory?")
    files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()}
    return {
        "kind": "run",
        "path": str(path),
        "files": files,
        "card": ModelCard.load(card_path).to_dict(),
    }


def _describe_onnx(path: Path) -> dict[str, Any]:
    try:
        import onnx
    except ImportError:
        raise DependencyError("abrl info on .onnx needs onnx; run pip install onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AbrlError(f"{path} is not a readable ONNX file: {exc}".splitlines()[0]) from None
    props = {p.key: p.value for p in model.metadata_props}
    card = ModelCard.from_onnx_metadata(props)
    return {
        "kind": "onnx",
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value_info(v) for v in model.graph.input],
        "outputs": [_value_info(v) for v in model.graph.output],
        "precision": _precision(model),
        "nodes": len(model.graph.node),
        "card": card.to_dict() if card else None,
        "note": None if card else "no abrl card: give --input-size/--mean/--std/--layout to use it",
    }


def _value_info(v) -> dict[str, Any]:
    t = v.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    return {"name": v.name, "dtype": _ELEM.get(t.elem_type, str(t.elem_type)), "shape": dims}


def _precision(model) -> str:
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "QLinearConv" in ops:
        return "int8"
    if any(t.data_type == 10 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def _describe_engine(sidecar: Path) -> dict[str, Any]:
    if not sidecar.is_file():
        raise AbrlError(f"{sidecar} is missing: a TensorRT engine is described by its sidecar JSON")
    engine = sidecar.with_name(sidecar.name.removesuffix(".json"))
    card = ModelCard.load(sidecar)
    return {
        "kind": "tensorrt",
        "path": str(engine),
        "size_bytes": engine.stat().st_size if engine.exists() else None,
        "precision": card.export.get("precision"),
        "card": card.to_dict(),
    }
