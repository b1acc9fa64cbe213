"""TensorRT engines from the exported ONNX files, for TensorRT 10 and 11.

TensorRT 11 networks are always strongly typed: the FP16/INT8 builder flags and the INT8
calibrator are gone, and every tensor keeps the type the ONNX file gives it. So the precision of an
engine is chosen by which ONNX file is built (FP32, FP16 from ``convert_fp16``, QDQ INT8 from
``quantize_int8``), and a mismatch between the requested precision and the file is refused rather
than silently giving an FP32 engine. On TensorRT 10 the builder flags are still used.

Everything above ``build_engine`` is pure and runs without TensorRT, so CPU tests cover it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from abrl_deploy.atomic import atomic_write_bytes
from abrl_deploy.errors import ConfigError, DependencyError, ExportError
from abrl_deploy.runtime.trt_support import make_logger, require_tensorrt

log = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
_BATCH_FORM = "MIN,OPT,MAX: three positive integers with MIN <= OPT <= MAX, e.g. '1,64,256'"


@dataclass(frozen=True)
class EngineResult:
    """What was built, for the model card."""

    path: Path
    tensorrt_version: str
    precision: str
    strongly_typed: bool
    batch_range: tuple[int, int, int]
    build_seconds: float
    timing_cache: Path | None


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """Parse ``"MIN,OPT,MAX"`` (e.g. ``"1,64,256"``) into the optimisation profile's batch sizes."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"batch range {text!r} is not integers; expected {_BATCH_FORM}") from None
    if len(values) != 3:
        raise ConfigError(f"batch range {text!r} has {len(values)} values; expected {_BATCH_FORM}")
    check_batch_range(values)  # type: ignore[arg-type]
    return values  # type: ignore[return-value]


def check_batch_range(batch_range: tuple[int, int, int]) -> None:
    """Raise ``ConfigError`` unless ``batch_range`` is three positive ints, min <= opt <= max."""
    ok = (
        len(batch_range) == 3
        and all(isinstance(b, int) and b > 0 for b in batch_range)
        and batch_range[0] <= batch_range[1] <= batch_range[2]
    )
    if not ok:
        raise ConfigError(f"batch range {tuple(batch_range)} is invalid; expected {_BATCH_FORM}")


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string such as ``"10.13.0.35"``."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise DependencyError(f"cannot read TensorRT's version {version!r}") from None


def _network_flags(major: int) -> tuple[str, ...]:
    """Names of the ``NetworkDefinitionCreationFlag`` members to set.

    TensorRT 11 is strongly typed whatever the flags (its STRONGLY_TYPED member is deprecated and
    ignored), and 10 is explicit-batch by default, so neither needs a flag: the weakly typed
    TensorRT 10 network is what lets the FP16/INT8 builder flags act.
    """
    if major < 10:
        raise DependencyError(
            f"TensorRT {major}.x is too old; abrl needs TensorRT 10 or later: "
            "pip install 'abrl[gpu]'"
        )
    return ()


def _is_strongly_typed(major: int) -> bool:
    return major >= 11


def _precision_flags(major: int, precision: str) -> tuple[str, ...]:
    """Names of the ``BuilderFlag`` members to set for ``precision`` on TensorRT ``major``."""
    _check_precision_name(precision)
    if _is_strongly_typed(major):
        return ()  # removed in 11: the precision is in the ONNX file
    # INT8 on a QDQ file needs the flag but no calibrator: the scales are in the graph.
    return {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision]


def _check_precision_name(precision: str) -> None:
    if precision not in ENGINE_PRECISIONS:
        valid = ", ".join(ENGINE_PRECISIONS)
        raise ConfigError(f"precision {precision!r} is unknown; valid: {valid}")


def onnx_precision(onnx_path: Path) -> str:
    """``"int8"`` if the file has Q/DQ nodes, ``"fp16"`` if float16 weights, else ``"fp32"``."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def _check_onnx_precision(major: int, precision: str, found: str, onnx_path: Path) -> None:
    """Refuse a file whose precision the engine would not honour (it would build, as FP32)."""
    _check_precision_name(precision)
    # TensorRT 10 can lower an FP32 file to FP16 with its flag; everything else must match.
    if precision == found or (precision == "fp16" and found == "fp32" and major < 11):
        return
    how = {
        "fp32": "the FP32 export",
        "fp16": "an FP16 file (abrl_deploy.export.quantize.convert_fp16)",
        "int8": "a QDQ INT8 file (abrl_deploy.export.quantize.quantize_int8)",
    }[precision]
    raise ConfigError(
        f"precision {precision!r} on TensorRT {major}: {onnx_path} has precision {found}; "
        f"build from {how}"
    )


def _check_image_shape(image_shape: tuple[int, int, int]) -> None:
    if len(image_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in image_shape):
        raise ConfigError(
            f"image shape {tuple(image_shape)} is invalid; expected (channels, height, width), "
            "three positive integers"
        )


def _flag_bits(enum: Any, names: tuple[str, ...]) -> int:
    """TensorRT's Python API takes network flags as a bit mask of enum positions."""
    bits = 0
    for name in names:
        bits |= 1 << int(getattr(enum, name))
    return bits


def _parse_onnx(trt: ModuleType, network: Any, logger: Any, onnx_path: Path) -> None:
    """Parse ``onnx_path`` into ``network``; raise one error listing every parser error."""
    parser = trt.OnnxParser(network, logger)
    # From the file, so weights stored as external data beside it are found.
    if parser.parse_from_file(str(onnx_path)):
        return
    lines = [_parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)]
    detail = "\n".join(f"  {line}" for line in lines) or "  (the parser reported no detail)"
    raise ExportError(f"TensorRT could not parse {onnx_path}:\n{detail}")


def _parser_error_text(err: Any) -> str:
    """``node NAME (OP): description``; names and operators are reported since TensorRT 8.6."""
    node = err.node_name() if hasattr(err, "node_name") else ""
    node = node or f"#{err.node()}"
    op = err.node_operator() if hasattr(err, "node_operator") else ""
    return f"node {node}{f' ({op})' if op else ''}: {err.desc()}"


def _add_profile(
    builder: Any,
    network: Any,
    config: Any,
    input_name: str,
    image_shape: tuple[int, int, int],
    batch_range: tuple[int, int, int],
) -> None:
    """One optimisation profile: the batch axis of ``input_name`` spans ``batch_range``."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if input_name not in inputs:
        raise ConfigError(f"input {input_name!r} is not in the network; inputs: {sorted(inputs)}")
    dims = tuple(inputs[input_name].shape)
    # -1 marks a dynamic axis; the image axes may be dynamic or must equal image_shape.
    if len(dims) != 4 or any(
        d not in (-1, want) for d, want in zip(dims[1:], image_shape, strict=True)
    ):
        want = ", ".join(map(str, image_shape))
        raise ConfigError(f"input {input_name!r} has shape {dims}; expected (N, {want})")
    profile = builder.create_optimization_profile()
    lo, opt, hi = ((b, *image_shape) for b in batch_range)
    profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)


def _attach_timing_cache(config: Any, path: Path | None) -> None:
    """Start from the cache at ``path`` if there is one, so repeated builds skip kernel timing."""
    data = path.read_bytes() if path is not None and path.exists() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        # Written by another GPU or TensorRT version: timings from it could mislead the builder.
        log.warning("timing cache %s does not match this GPU/TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    input_name: str,
    image_shape: tuple[int, int, int],
    batch_range: tuple[int, int, int],
    precision: str,
    timing_cache: Path | None = None,
    workspace_gib: float = 4.0,
) -> EngineResult:
    """Build and write a serialized TensorRT engine for ``onnx_path``.

    Args:
        input_name: the image input, whose batch axis is dynamic.
        image_shape: (channels, height, width) of one image.
        batch_range: (min, opt, max) batch sizes of the optimisation profile.
        precision: one of ``ENGINE_PRECISIONS``; on TensorRT >= 11 the file must already carry it.
        timing_cache: read if it exists, written back after the build.

    Raises:
        ConfigError: invalid arguments, or a file that does not carry ``precision``.
        ExportError: the ONNX file did not parse or the build failed.
    """
    check_batch_range(batch_range)
    _check_image_shape(image_shape)
    _check_precision_name(precision)
    trt = require_tensorrt()
    major = trt_major(trt.__version__)
    _check_onnx_precision(major, precision, onnx_precision(onnx_path), onnx_path)

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(
        _flag_bits(trt.NetworkDefinitionCreationFlag, _network_flags(major))
    )
    _parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for name in _precision_flags(major, precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    _add_profile(builder, network, config, input_name, image_shape, batch_range)
    _attach_timing_cache(config, timing_cache)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        detail = "; ".join(logger.errors) or "no error was logged"
        raise ExportError(f"TensorRT {trt.__version__} failed to build {onnx_path}: {detail}")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    if timing_cache is not None:
        cache_bytes = config.get_timing_cache().serialize()
        atomic_write_bytes(timing_cache, bytes(memoryview(cache_bytes)))
    return EngineResult(
        path=engine_path,
        tensorrt_version=trt.__version__,
        precision=precision,
        strongly_typed=_is_strongly_typed(major),
        batch_range=tuple(batch_range),  # type: ignore[arg-type]
        build_seconds=seconds,
        timing_cache=timing_cache,
    )
