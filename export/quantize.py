"""FP16 and INT8 variants of an exported ONNX classifier.

Both variants carry their precision in the graph itself, which is what TensorRT 11 needs (it has no
FP16/INT8 builder flags): FP16 as float16 weights and activations, INT8 as QuantizeLinear /
DequantizeLinear pairs with calibrated scales. The same files run in ONNX Runtime.

Found on ONNX Runtime 1.32 (x86-64 CPU, AVX-512): its CPU provider has no float16 kernels for
Conv, Gemm, MatMul, Add, Relu, BatchNormalization, MaxPool or GlobalAveragePool, so at session
creation it wraps each of them in Casts to float32 and, at the default optimisation level, folds the
casts of the weights. The FP16 file therefore runs on CPU, but as float32 arithmetic on
float16-rounded weights: useful to check accuracy, not a speed-up there. No op needs block-listing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from abrl_deploy.atomic import atomic_write_bytes
from abrl_deploy.errors import ConfigError, DependencyError, ExportError, first_line

from .spec import CALIBRATIONS

try:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
except ImportError as exc:  # the reader below must subclass ORT's, so this import is eager
    raise DependencyError(
        f"{exc.name or 'onnx/onnxruntime'} is not installed; run pip install 'abrl[export]'"
    ) from exc


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds calibration batches to ONNX Runtime's quantizer, one ``get_next()`` at a time.

    The same object can feed a TensorRT INT8 calibrator (TensorRT 10) by calling ``get_next()``,
    so one data source serves both backends.

    Args:
        batches: float32 NCHW arrays; consumed once, lazily.
        input_name: the model's image input, the key of every feed dict.
    """

    def __init__(self, batches: Iterable[np.ndarray], input_name: str) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)
        self.input_name = input_name
        self.batches_read = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed dict ``{input_name: batch}``, or None when the batches are used up."""
        batch = next(self._batches, None)
        if batch is None:
            return None
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if array.ndim != 4:
            raise ConfigError(
                f"calibration batch {self.batches_read} has shape {array.shape}; "
                "expected a 4-D NCHW array (batch, channels, height, width)"
            )
        self.batches_read += 1
        return {self.input_name: array}


def convert_fp16(src: Path, dst: Path) -> None:
    """Write a float16 copy of ``src`` whose inputs and outputs stay float32.

    Keeping float32 IO means callers feed the same arrays to every variant; the Casts at the edges
    are cheap. The model's ``metadata_props`` (preprocessing, labels) are carried over.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    metadata = _metadata(model)
    try:
        fp16 = convert_float_to_float16(model, keep_io_types=True)
        # The converter appends the input Casts after their consumers; ORT does not mind, but
        # onnx.checker and TensorRT's parser want nodes in topological order.
        OnnxModel.graph_topological_sort(fp16.graph)
    except Exception as exc:  # converter raises bare ValueError/KeyError on odd graphs
        raise ExportError(f"FP16 conversion of {src} failed: {exc}") from exc
    _set_metadata(fp16, metadata)
    bad_io = [
        v.name
        for v in [*fp16.graph.input, *fp16.graph.output]
        if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT
    ]
    if bad_io:
        raise ExportError(f"FP16 model of {src} has non-float32 inputs/outputs: {bad_io}")
    atomic_write_bytes(dst, fp16.SerializeToString())


# The INT8 forms, by the runtime a file is meant for. x86 integer kernels (VNNI, AVX2 vpmaddubsw)
# multiply unsigned 8-bit activations by signed 8-bit weights, which is what ONNX Runtime's and
# OpenVINO's fast CPU paths use (issue 13: 92 ms uint8 against 281 ms int8 activations, same
# ResNet-18, AMX Xeon); TensorRT accepts only zero-point-0 (symmetric int8) activations.
INT8_FORMS: dict[str, dict[str, str]] = {
    "cpu": {"activations": "uint8, asymmetric (per tensor)",
            "weights": "int8, symmetric (per channel)",
            "for": "ONNX Runtime / OpenVINO on x86 CPUs"},
    "trt": {"activations": "int8, symmetric (per tensor)",
            "weights": "int8, symmetric (per channel)", "for": "TensorRT"},
    "cpu-s8": {"activations": "int8, asymmetric (per tensor)",
               "weights": "int8, symmetric (per channel)",
               "for": "none: the form written before issue 13, kept to measure against"},
}  # fmt: skip


def quantize_int8(
    src: Path,
    dst: Path,
    reader: CalibrationDataReader,
    *,
    per_channel: bool = True,
    form: str = "cpu",
    calibration: str = "minmax",
    exclude: tuple[str, ...] = (),
    prepared: bool = False,
) -> None:
    """Static INT8 quantization in QDQ form, calibrated on ``reader``'s batches.

    ``form`` is one of :data:`INT8_FORMS`; weights are always signed int8 with zero point 0, one
    scale per output channel when ``per_channel`` is set. ``calibration`` picks how activation
    ranges are set from the batches (:data:`CALIBRATIONS`); ``exclude`` names nodes (of the
    pre-processed graph, see :func:`quantizable_nodes`) that stay in float. ``prepared``: ``src``
    is already the output of :func:`prepare_int8` (the fallback quantizes one file many times).

    Raises:
        ExportError: pre-processing, calibration or quantization failed, or the reader gave no
            batch.
    """
    if form not in INT8_FORMS or calibration not in CALIBRATIONS:
        raise ConfigError(
            f"INT8 form {form!r} / calibration {calibration!r} is unknown; "
            f"forms: {list(INT8_FORMS)}, calibrations: {list(CALIBRATIONS)}"
        )
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    metadata = _metadata(onnx.load(str(src), load_external_data=False))
    with tempfile.TemporaryDirectory(prefix="abrl-int8-") as tmp:
        quantized = Path(tmp) / "int8.onnx"
        try:
            if not prepared:
                prepare_int8(src, Path(tmp) / "prepared.onnx")
                src = Path(tmp) / "prepared.onnx"
            methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}  # fmt: skip
            quantize_static(
                str(src),
                str(quantized),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8 if form == "cpu" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[calibration],
                nodes_to_exclude=list(exclude),
                extra_options={"ActivationSymmetric": form == "trt", "WeightSymmetric": True},
            )
        except Exception as exc:  # ORT raises plain ValueError/RuntimeError with the cause
            if isinstance(exc, ConfigError):  # a bad batch from our reader: already explained
                raise
            if isinstance(reader, ImageCalibrationReader) and reader.batches_read == 0:
                raise ExportError(
                    f"INT8 quantization of {src}: the calibration reader gave no batch; "
                    "pass at least one NCHW float32 batch of training images"
                ) from exc
            raise ExportError(f"INT8 quantization of {src} failed: {exc}") from exc
        model = onnx.load(str(quantized))
    _set_metadata(model, metadata)  # quantize_static writes a fresh ModelProto without them
    atomic_write_bytes(dst, model.SerializeToString())


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Set ``metadata`` on ``model``, replacing entries with the same key."""
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def prepare_int8(src: Path, dst: Path) -> None:
    """ORT's recommended pre-pass, written to ``dst`` with ``src``'s metadata: symbolic shape
    inference plus graph optimisation (BatchNorm folded into Conv), so that every tensor gets a
    calibrated range."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # ORT raises plain ValueError/RuntimeError with the cause
        raise ExportError(f"INT8 pre-processing of {src} failed: {first_line(exc)}") from exc
    model = onnx.load(str(dst))
    _set_metadata(model, _metadata(onnx.load(str(src), load_external_data=False)))
    onnx.save(model, str(dst))


def quantizable_nodes(src: Path, *, prepared: bool = False) -> list[str]:
    """Names of the Conv / Gemm / MatMul nodes of ``src`` after ORT's pre-pass (``prepared``: it
    already is), in graph order: the names ``quantize_int8(exclude=...)`` takes."""
    if prepared:
        graph = onnx.load(str(src)).graph
    else:
        with tempfile.TemporaryDirectory(prefix="abrl-int8-") as tmp:
            prepare_int8(src, Path(tmp) / "prepared.onnx")
            graph = onnx.load(str(Path(tmp) / "prepared.onnx")).graph
    return [n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
