"""TensorRT runner: pure helpers and missing-dependency errors on CPU; a real engine, built and run
against ONNX Runtime, under the ``tensorrt`` marker (skipped without TensorRT and a CUDA device)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from abrl_deploy.artifacts import sidecar as sidecar_path
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import AbrlError, DependencyError, RuntimeBackendError
from abrl_deploy.runtime.base import InputSpec
from abrl_deploy.runtime.tensorrt import (
    TrtRunner,
    _load_card,
    check_batch_in_profile,
    numpy_dtype,
    spec_shape,
    split_io,
)

# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("FLOAT", np.float32),
        ("HALF", np.float16),
        ("INT8", np.int8),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
    ],
)
def test_numpy_dtype(name: str, want: type) -> None:
    assert numpy_dtype(name) == np.dtype(want)
    # A pybind11 enum member has .name; its str() is "DataType.NAME".
    assert numpy_dtype(types.SimpleNamespace(name=name)) == np.dtype(want)

    class Repr:
        def __str__(self) -> str:
            return f"DataType.{name}"

    assert numpy_dtype(Repr()) == np.dtype(want)


@pytest.mark.parametrize("name", ["BF16", "FP8", "INT4", "FP4"])
def test_numpy_dtype_refuses_types_numpy_lacks(name: str) -> None:
    with pytest.raises(RuntimeBackendError) as info:
        numpy_dtype(types.SimpleNamespace(name=name))
    message = str(info.value)
    assert f"type {name} has no numpy equivalent" in message
    assert "FLOAT, HALF" in message and "\n" not in message


def test_split_io_keeps_engine_order() -> None:
    tensors = [("logits", False), ("images", True), ("features", False)]
    assert split_io(tensors) == ("images", ("logits", "features"))
    assert split_io(iter([("x", True), ("y", False)])) == ("x", ("y",))


@pytest.mark.parametrize(
    "tensors",
    [
        [("logits", False)],  # no input
        [("a", True), ("b", True), ("logits", False)],  # two inputs
        [("images", True)],  # no output
        [],
    ],
)
def test_split_io_refuses(tensors: list[tuple[str, bool]]) -> None:
    with pytest.raises(RuntimeBackendError, match="needs one image input and at least one output"):
        split_io(tensors)


def test_spec_shape() -> None:
    assert spec_shape((-1, 3, 224, 224)) == (None, 3, 224, 224)
    assert spec_shape([8, 3, 16, 16]) == (8, 3, 16, 16)
    assert spec_shape((-1, -1)) == (None, None)
    assert all(type(d) is int for d in spec_shape(np.array([4, 3], dtype=np.int64)))


@pytest.mark.parametrize(
    ("batch", "ok"), [(1, True), (64, True), (256, True), (0, False), (257, False), (1000, False)]
)
def test_check_batch_in_profile(batch: int, ok: bool) -> None:
    lo, hi = (1, 3, 16, 16), (256, 3, 16, 16)
    if ok:
        check_batch_in_profile(batch, lo, hi)
        return
    with pytest.raises(RuntimeBackendError) as info:
        check_batch_in_profile(batch, lo, hi)
    message = str(info.value)
    assert f"batch {batch} is outside" in message and "batch 1 to 256" in message
    assert "--batch-range MIN,OPT,MAX" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_check_batch_in_profile_fixed_range() -> None:
    check_batch_in_profile(8, (8, 3, 4, 4), (8, 3, 4, 4))
    for batch in (7, 9):
        with pytest.raises(RuntimeBackendError, match="batch 8 to 8"):
            check_batch_in_profile(batch, (8, 3, 4, 4), (8, 3, 4, 4))


def _card(**changes) -> ModelCard:
    card = ModelCard(
        method="finetune",
        backbone="tiny",
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        input_size=16,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    return card.replace(**changes)


def test_sidecar_and_card(tmp_path: Path) -> None:
    engine = tmp_path / "out" / "model.engine"
    assert sidecar_path(engine) == tmp_path / "out" / "model.engine.json"
    assert _load_card(sidecar_path(engine)) is None  # an engine built elsewhere has none
    sidecar = tmp_path / "model.engine.json"
    card = _card(export={"format": "trt", "precision": "fp16"})
    card.save(sidecar)
    assert _load_card(sidecar) == card
    sidecar.write_text("{not json")
    with pytest.raises(RuntimeBackendError) as info:
        _load_card(sidecar)
    assert str(sidecar) in str(info.value) and "not valid JSON" in str(info.value)


# --- missing TensorRT / CUDA -------------------------------------------------------------------


def test_open_without_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    runner = TrtRunner(engine)
    with pytest.raises(DependencyError) as info:
        runner.open()
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    assert message.startswith("TensorRT is not installed")
    assert "pip install 'abrl[gpu]'" in message
    with pytest.raises(DependencyError):  # and as a context manager
        with TrtRunner(engine):
            pass
    # Not open, so it refuses to run rather than failing on a missing engine.
    with pytest.raises(AbrlError, match="trt runner is not open"):
        runner.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_open_without_cuda_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # TensorRT present (a stand-in whose Builder works), but torch cannot see a CUDA device: the
    # runner's device buffers are torch tensors, so it refuses before touching the engine.
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake = types.ModuleType("tensorrt")
    fake.Logger = type("Logger", (), {"ERROR": 1, "__init__": lambda self, level: None})
    fake.Builder = lambda logger: object()
    fake.__version__ = "11.1.0"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(RuntimeBackendError) as info:
        TrtRunner(tmp_path / "missing.engine").open()
    message = str(info.value)
    assert "torch.cuda.is_available() is False" in message and "CUDA build of torch" in message
    assert info.value.exit_code == 2


def test_import_is_lazy() -> None:
    code = (
        "import sys; import abrl_deploy.runtime.tensorrt; from abrl_deploy.runtime import "
        "TrtRunner; print('torch' in sys.modules, 'tensorrt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


# --- real engines (GPU + TensorRT) -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN, images [N,3,16,16] → logits [N,10], fixed weights."""
    from card_model import write_cnn

    return write_cnn(tmp_path_factory.mktemp("trt_runner") / "model.onnx", width=8,
                     output="logits")  # fmt: skip


@pytest.fixture(scope="module")
def engine(tiny_onnx: Path) -> Path:
    from abrl_deploy.export.tensorrt import build_engine

    path = tiny_onnx.with_name("model.engine")
    build_engine(
        tiny_onnx,
        path,
        input_name="images",
        image_shape=(3, 16, 16),
        batch_range=(1, 4, 16),
        precision="fp32",
        workspace_gib=0.5,
    )
    return path


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 0.3, (n, 3, 16, 16)).astype(np.float32)


def _ort(path: Path, images: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


@pytest.mark.tensorrt
def test_trt_runner_matches_onnxruntime(engine: Path, tiny_onnx: Path) -> None:
    with TrtRunner(engine) as runner:
        assert runner.input_spec == InputSpec("images", (None, 3, 16, 16), np.dtype(np.float32))
        assert runner.output_names == ("logits",)
        assert runner.batch_range == (1, 16)
        results = []
        # Largest first, then smaller and larger again: buffers are grown and reused as views.
        for i, n in enumerate((16, 1, 4, 16)):
            images = _images(n, seed=i)
            got = runner.run_staged(runner.stage(images))["logits"]
            want = _ort(tiny_onnx, images)
            assert got.shape == (n, 10) and got.dtype == np.float32
            assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())
            assert runner.last_device_ms is not None and runner.last_device_ms > 0
            results.append((got, got.copy()))
        for got, copy in results:  # returned arrays are not views of reused buffers
            np.testing.assert_array_equal(got, copy)
        info = runner.describe()
        assert info["backend"] == "trt" and info["engine"] == str(engine)
        assert info["tensorrt"] and info["gpu"] and info["batch_range"] == (1, 16)
        assert "precision" not in info  # no sidecar beside this engine


@pytest.mark.tensorrt
def test_trt_runner_reads_the_sidecar(engine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.engine"
    copy.write_bytes(engine.read_bytes())
    card = _card(export={"format": "trt", "precision": "fp32", "tensorrt": "x"})
    card.save(sidecar_path(copy))
    with TrtRunner(copy) as runner:
        assert runner.card == card
        assert runner.describe()["precision"] == "fp32"


@pytest.mark.tensorrt
def test_batch_outside_the_profile_is_refused(engine: Path) -> None:
    with TrtRunner(engine) as runner:
        for n in (17, 64):
            with pytest.raises(RuntimeBackendError, match=r"batch 1 to 16.*--batch-range"):
                runner.infer(_images(n))
        assert runner.infer(_images(16))["logits"].shape == (16, 10)  # still usable


@pytest.mark.tensorrt
def test_unloadable_engine_names_file_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "model.engine"
    bad.write_bytes(b"not a TensorRT engine" * 64)
    with pytest.raises(RuntimeBackendError) as info:
        TrtRunner(bad).open()
    message = str(info.value)
    assert str(bad) in message and "\n" not in message
    assert "TensorRT version and GPU model that built it" in message
    with pytest.raises(RuntimeBackendError, match="no TensorRT engine at"):
        TrtRunner(tmp_path / "missing.engine").open()
