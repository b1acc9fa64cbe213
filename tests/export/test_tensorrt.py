"""TensorRT engine building: pure helpers on CPU; real builds under the ``tensorrt`` marker."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from abrl_deploy.errors import ConfigError, DependencyError, RuntimeBackendError
from abrl_deploy.export import tensorrt as trt_export
from abrl_deploy.export.tensorrt import (
    EngineResult,
    build_engine,
    onnx_precision,
    parse_batch_range,
    require_tensorrt,
)

# --- batch range -------------------------------------------------------------------------------


def test_parse_batch_range() -> None:
    assert parse_batch_range("1,64,256") == (1, 64, 256)
    assert parse_batch_range(" 8, 8 ,8 ") == (8, 8, 8)


@pytest.mark.parametrize("text", ["1,64", "1,64,256,512", "a,b,c", "0,1,2", "-1,4,8", "8,4,16"])
def test_parse_batch_range_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_batch_range(text)
    message = str(info.value)
    assert repr(text) in message or "invalid" in message  # names what was got
    assert "MIN,OPT,MAX" in message and "'1,64,256'" in message  # and the expected form
    assert info.value.exit_code == 2


# --- version-aware flags -----------------------------------------------------------------------


def test_tensorrt_11_sets_no_flags() -> None:
    # Strongly typed always; the precision flags no longer exist there.
    assert trt_export._network_flags(11) == ()
    assert trt_export._is_strongly_typed(11) and trt_export._is_strongly_typed(12)
    for precision in ("fp32", "fp16", "int8"):
        assert trt_export._precision_flags(11, precision) == ()


def test_tensorrt_10_uses_builder_flags() -> None:
    assert trt_export._network_flags(10) == ()
    assert not trt_export._is_strongly_typed(10)
    assert trt_export._precision_flags(10, "fp32") == ()
    assert trt_export._precision_flags(10, "fp16") == ("FP16",)
    assert trt_export._precision_flags(10, "int8") == ("INT8",)


def test_old_tensorrt_and_unknown_precision_refused() -> None:
    with pytest.raises(DependencyError, match="TensorRT 10 or later"):
        trt_export._network_flags(8)
    with pytest.raises(ConfigError, match="'bf16' is unknown; valid: fp32, fp16, int8"):
        trt_export._precision_flags(10, "bf16")


def test_flag_bits_and_version() -> None:
    flags = types.SimpleNamespace(FP16=5, INT8=2)
    assert trt_export._flag_bits(flags, ("FP16", "INT8")) == (1 << 5) | (1 << 2)
    assert trt_export._flag_bits(flags, ()) == 0
    assert trt_export.trt_major("10.13.0.35") == 10
    assert trt_export.trt_major("11.1.0") == 11


@pytest.mark.parametrize(
    ("major", "precision", "found", "ok"),
    [
        (11, "fp16", "fp16", True),
        (11, "int8", "int8", True),
        (11, "fp32", "fp32", True),
        (11, "fp16", "fp32", False),  # would silently build an FP32 engine
        (11, "int8", "fp32", False),  # no calibrator in 11
        (10, "fp16", "fp32", True),  # the FP16 flag lowers it
        (10, "int8", "fp32", False),  # we calibrate in ONNX Runtime, never in TensorRT
        (10, "fp32", "int8", False),
    ],
)
def test_precision_must_be_in_the_onnx(major: int, precision: str, found: str, ok: bool) -> None:
    check = trt_export._check_onnx_precision
    if ok:
        check(major, precision, found, Path("m.onnx"))
    else:
        with pytest.raises(ConfigError, match=f"has precision {found}; build from"):
            check(major, precision, found, Path("m.onnx"))


def test_onnx_precision_reads_the_file(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def save(name: str, dtype: int, nodes: list, inits: list) -> Path:
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", dtype, ["N", 4])],
            inits,
        )
        path = tmp_path / name
        onnx.save(helper.make_model(graph), str(path))
        return path

    w32 = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    w16 = numpy_helper.from_array(np.eye(4, dtype=np.float16), "w")
    scale = numpy_helper.from_array(np.float32(0.1), "s")
    matmul = helper.make_node("MatMul", ["x", "w"], ["y"])
    qdq = [
        helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s"], ["y"]),
    ]
    assert onnx_precision(save("a.onnx", TensorProto.FLOAT, [matmul], [w32])) == "fp32"
    assert onnx_precision(save("b.onnx", TensorProto.FLOAT16, [matmul], [w16])) == "fp16"
    assert onnx_precision(save("c.onnx", TensorProto.FLOAT, qdq, [scale])) == "int8"


def test_bad_arguments_are_refused_before_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # would raise DependencyError if reached

    def build(batch_range: tuple, image_shape: tuple, precision: str) -> None:
        build_engine(
            Path("m.onnx"),
            Path("m.engine"),
            input_name="images",
            image_shape=image_shape,
            batch_range=batch_range,
            precision=precision,
        )

    with pytest.raises(ConfigError, match="batch range"):
        build((4, 1, 8), (3, 16, 16), "fp16")
    with pytest.raises(ConfigError, match="image shape"):
        build((1, 1, 1), (16, 16), "fp16")
    with pytest.raises(ConfigError, match="precision 'half'"):
        build((1, 1, 1), (3, 16, 16), "half")


# --- require_tensorrt --------------------------------------------------------------------------


def test_require_tensorrt_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(DependencyError) as info:
        require_tensorrt()
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in message
    assert message.startswith("TensorRT is not installed")
    assert "pip install 'abrl[gpu]'" in message


def _fake_tensorrt(builder_error: Exception | None) -> types.ModuleType:
    fake = types.ModuleType("tensorrt")

    class Logger:
        ERROR = 1

        def __init__(self, level: int) -> None:
            pass

    def builder(logger: Logger) -> object:
        if builder_error is not None:
            raise builder_error
        return object()

    fake.Logger, fake.Builder, fake.__version__ = Logger, builder, "11.1.0"
    return fake


def test_require_tensorrt_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    nullptr = TypeError("pybind11::init(): factory function returned nullptr")
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(nullptr))
    with pytest.raises(RuntimeBackendError) as info:
        require_tensorrt()
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "needs a CUDA device" in message and "nvidia-smi" in message
    assert "factory function returned nullptr" in message  # TensorRT's own words


def test_require_tensorrt_trusts_tensorrt_over_cpu_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CPU-only torch wheel beside a working GPU must not block TensorRT.
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake = _fake_tensorrt(None)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert require_tensorrt() is fake


# --- real builds (GPU + TensorRT) --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN, images [N,3,16,16] → logits [N,10] (dynamic N), fixed weights."""
    from card_model import write_cnn

    return write_cnn(tmp_path_factory.mktemp("trt") / "model.onnx", width=8, output="logits")


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0.5, 0.3, (n, 3, 16, 16)).astype(np.float32)


def _run_engine(engine_path: Path, images: np.ndarray) -> np.ndarray:
    """Run a built engine through TensorRT's name-based tensor API, with torch CUDA buffers."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    x = torch.from_numpy(images).cuda().contiguous()
    context.set_input_shape("images", tuple(x.shape))
    y = torch.empty(tuple(context.get_tensor_shape("logits")), device="cuda")
    context.set_tensor_address("images", x.data_ptr())
    context.set_tensor_address("logits", y.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return y.cpu().numpy()


def _run_ort(path: Path, images: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def _variant(tiny_onnx: Path, precision: str) -> Path:
    from abrl_deploy.export.quantize import ImageCalibrationReader, convert_fp16, quantize_int8

    if precision == "fp32":
        return tiny_onnx
    dst = tiny_onnx.with_name(f"model.{precision}.onnx")
    if precision == "fp16":
        convert_fp16(tiny_onnx, dst)
    else:
        batches = [_images(32)[i : i + 8] for i in range(0, 32, 8)]
        quantize_int8(tiny_onnx, dst, ImageCalibrationReader(batches, "images"))
    return dst


@pytest.mark.tensorrt
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 2e-2), ("int8", 0.15)])
def test_build_and_run_engine(tiny_onnx: Path, tmp_path: Path, precision: str, atol: float) -> None:
    onnx_path = _variant(tiny_onnx, precision)
    engine_path, cache = tmp_path / f"model.{precision}.engine", tmp_path / "timing.cache"
    result = build_engine(
        onnx_path,
        engine_path,
        input_name="images",
        image_shape=(3, 16, 16),
        batch_range=(1, 4, 16),
        precision=precision,
        timing_cache=cache,
        workspace_gib=0.5,
    )
    assert isinstance(result, EngineResult) and result.path == engine_path
    assert result.precision == precision and result.batch_range == (1, 4, 16)
    assert result.strongly_typed == (trt_export.trt_major(result.tensorrt_version) >= 11)
    assert engine_path.stat().st_size > 0 and cache.stat().st_size > 0
    for n in (1, 4, 16):  # both ends of the profile and the optimum
        images = _images(n)
        # Against ONNX Runtime on the same file: the quantized/halved weights are identical.
        want, got = _run_ort(onnx_path, images), _run_engine(engine_path, images)
        assert got.shape == (n, 10)
        assert np.abs(got - want).max() <= atol * max(1.0, np.abs(want).max())


@pytest.mark.tensorrt
def test_timing_cache_is_reused(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    kwargs = dict(
        input_name="images", image_shape=(3, 16, 16), batch_range=(1, 8, 8), precision="fp32"
    )
    build_engine(tiny_onnx, tmp_path / "a.engine", timing_cache=cache, **kwargs)
    first = cache.read_bytes()
    second = build_engine(tiny_onnx, tmp_path / "b.engine", timing_cache=cache, **kwargs)
    assert second.timing_cache == cache and len(cache.read_bytes()) >= len(first)


@pytest.mark.tensorrt
def test_unknown_input_name_lists_the_inputs(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'pixels' is not in the network; inputs: \['images'\]"):
        build_engine(
            tiny_onnx,
            tmp_path / "x.engine",
            input_name="pixels",
            image_shape=(3, 16, 16),
            batch_range=(1, 1, 1),
            precision="fp32",
        )
