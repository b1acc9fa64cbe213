"""OpenVINO runner: an ONNX file compiled for the CPU (issue 13).

OpenVINO picks its own inference precision unless told: bf16 on CPUs with AMX or AVX-512 BF16,
f32 elsewhere. That is a precision change, so the runner states the precision it really runs in
(read back from the compiled model) and takes ``precision`` ("f32", "bf16", "f16") to choose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.errors import ConfigError, DependencyError, RuntimeBackendError, first_line

from .base import InputSpec, Runner

OV_PRECISIONS = ("auto", "f32", "bf16", "f16")


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise DependencyError(
            "OpenVINO is not installed; pip install 'abrl[openvino]' (or openvino)"
        ) from None
    return openvino


class OvRunner(Runner):
    """``path`` (ONNX) compiled by OpenVINO for the CPU at ``precision`` ("auto": OpenVINO's)."""

    backend = "ov-cpu"

    def __init__(self, path: str | Path, precision: str = "auto", threads: int | None = None):
        super().__init__()
        if precision not in OV_PRECISIONS:
            raise ConfigError(f"OpenVINO precision {precision!r}: use one of {OV_PRECISIONS}")
        self.path, self.precision, self.threads = Path(path), precision, threads
        self.compiled = self.request = None
        self._names: tuple[str, ...] = ()
        self._metadata: dict[str, str] = {}

    def open_impl(self) -> None:
        ov = import_openvino()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        except Exception as exc:
            raise RuntimeBackendError(
                f"ov-cpu cannot load {self.path}: {first_line(exc)}"
            ) from None
        self.request = self.compiled.create_infer_request()
        import onnx

        model = onnx.load(str(self.path), load_external_data=False)  # once: names and metadata
        self._metadata = {p.key: p.value for p in model.metadata_props}
        self._names = self._graph_output_names([o.name for o in model.graph.output])

    def _graph_output_names(self, graph: list[str]) -> tuple[str, ...]:
        """Each output by its ONNX graph name: OpenVINO's ``get_any_name`` may return another name
        of the same tensor (on an FP16 file, the Cast's ``graph_output_cast_0`` for ``logits``)."""
        names = []
        for port in self.compiled.outputs:
            known = [n for n in graph if n in port.get_names()]
            names.append(known[0] if known else port.get_any_name())
        return tuple(names)

    def close_impl(self) -> None:
        self.compiled = self.request = None
        self._names, self._metadata = (), {}

    @property
    def inference_precision(self) -> str:
        """The precision OpenVINO runs in, read back from the compiled model."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    @property
    def metadata(self) -> dict[str, str]:
        return self._metadata

    @property
    def input_spec(self) -> InputSpec:
        port = self.compiled.inputs[0]
        shape = port.get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape)
        return InputSpec(port.get_any_name(), dims, np.dtype(np.float32))

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._names

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "inference_precision": self.inference_precision,
            "precision_asked": self.precision,
            "threads": self.compiled.get_property("INFERENCE_NUM_THREADS"),
        }

    def infer_impl(self, staged: np.ndarray) -> dict[str, np.ndarray]:
        try:
            result = self.request.infer({0: staged})
        except Exception as exc:
            raise RuntimeBackendError(f"ov-cpu failed on {self.path}: {first_line(exc)}") from None
        outputs = zip(self._names, self.compiled.outputs, strict=True)
        return {name: np.array(result[port]) for name, port in outputs}
