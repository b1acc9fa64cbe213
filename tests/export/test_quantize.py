"""FP16 and INT8 variants of a tiny trained CNN: precision in the file, runs in ORT, agrees."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from abrl_deploy.errors import ConfigError, ExportError  # noqa: E402
from abrl_deploy.export.int8_fallback import quantize_within_tolerance  # noqa: E402
from abrl_deploy.export.quantize import (  # noqa: E402
    ImageCalibrationReader,
    convert_fp16,
    quantizable_nodes,
    quantize_int8,
)

COLOURS = np.random.default_rng(0).uniform(0, 1, (10, 3)).astype(np.float32)
METADATA = {"abrl.preprocess": '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}'}


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-coloured 16x16 images; a per-image colour shift makes ~20% of them hard."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    shift = rng.normal(0, 0.15, (n, 3, 1, 1))
    pixels = COLOURS[labels][:, :, None, None] + shift + rng.normal(0, 0.3, (n, 3, 16, 16))
    return pixels.astype(np.float32), labels


def _train_tiny_cnn() -> torch.nn.Module:
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(80):
        x, y = make_images(64, seed=step)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One thread: a tiny model trains in ~2 s alone but far slower when threads fight over 2 cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _train_tiny_cnn()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("quantize") / "model.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and says so twice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            torch.from_numpy(make_images(2, seed=999)[0]),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}},
            opset_version=17,
        )
    proto = onnx.load(str(path))
    for key, value in METADATA.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def eval_images() -> np.ndarray:
    return make_images(64, seed=1000)[0]


def run_ort(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    return session.run(None, {"images": images})[0]


def test_fp32_model_is_not_trivial(fp32_onnx: Path) -> None:
    images, labels = make_images(512, seed=1001)
    accuracy = (run_ort(fp32_onnx, images).argmax(1) == labels).mean()
    assert 0.5 < accuracy < 0.98, accuracy  # learned, yet with near-boundary cases to disagree on


def test_fp16_has_fp16_weights_and_fp32_io(fp32_onnx: Path, tmp_path: Path) -> None:
    dst = tmp_path / "model.fp16.onnx"
    convert_fp16(fp32_onnx, dst)
    model = onnx.load(str(dst))
    onnx.checker.check_model(model, full_check=True)
    float_types = {i.data_type for i in model.graph.initializer} - {onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.FLOAT16}
    io_types = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert io_types == {onnx.TensorProto.FLOAT}
    assert {p.key: p.value for p in model.metadata_props} == METADATA
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary behind


def test_fp16_runs_in_ort_cpu_and_agrees(
    fp32_onnx: Path, eval_images: np.ndarray, tmp_path: Path
) -> None:
    dst = tmp_path / "model.fp16.onnx"
    convert_fp16(fp32_onnx, dst)
    ref, got = run_ort(fp32_onnx, eval_images), run_ort(dst, eval_images)
    assert got.dtype == np.float32 and got.shape == (64, 10)
    agreement = (ref.argmax(1) == got.argmax(1)).mean()
    assert agreement >= 0.98, agreement
    # fp16 weights carry ~3 significant digits; logits here are O(10).
    assert np.abs(ref - got).max() < 0.05, np.abs(ref - got).max()


def test_calibration_reader_yields_every_batch_then_none() -> None:
    batches = [make_images(4, seed=s)[0] for s in range(3)]
    reader = ImageCalibrationReader(iter(batches), "images")
    fed = [reader.get_next() for _ in range(3)]
    assert [list(f) for f in fed] == [["images"]] * 3
    assert all(np.array_equal(f["images"], b) for f, b in zip(fed, batches, strict=True))
    assert reader.get_next() is None and reader.get_next() is None
    assert reader.batches_read == 3


def test_calibration_reader_rejects_non_nchw() -> None:
    reader = ImageCalibrationReader([np.zeros((3, 16, 16), np.float32)], "images")
    with pytest.raises(ConfigError, match=r"shape \(3, 16, 16\).*NCHW"):
        reader.get_next()


@pytest.fixture(scope="module")
def int8_onnx(fp32_onnx: Path) -> Path:
    dst = fp32_onnx.with_name("model.int8.onnx")
    batches = (make_images(32, seed=2000 + i)[0] for i in range(4))
    quantize_int8(fp32_onnx, dst, ImageCalibrationReader(batches, "images"), form="trt")
    return dst


def test_int8_has_per_channel_qdq(int8_onnx: Path) -> None:
    model = onnx.load(str(int8_onnx))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    per_channel = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a stored weight
            scale = inits[node.input[1]]
            if scale.size > 1:
                per_channel.append(node.input[0])
                axis = [a.i for a in node.attribute if a.name == "axis"]
                assert axis == [0]
    assert len(per_channel) >= 3, per_channel  # two Convs and the Linear
    # TensorRT accepts only zero points of 0; every zero point is int8 and 0 by default.
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_int8_runs_in_ort_agrees_and_keeps_metadata(
    fp32_onnx: Path, int8_onnx: Path, eval_images: np.ndarray
) -> None:
    ref, got = run_ort(fp32_onnx, eval_images), run_ort(int8_onnx, eval_images)
    # Measured 64/64 on this model; 90% leaves room for a changed calibration or ORT version.
    agreement = (ref.argmax(1) == got.argmax(1)).mean()
    assert agreement >= 0.90, agreement
    metadata = {p.key: p.value for p in onnx.load(str(int8_onnx)).metadata_props}
    assert metadata.items() >= METADATA.items()


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy"])
def test_int8_cpu_form_has_uint8_activations_and_int8_weights(
    fp32_onnx: Path, eval_images: np.ndarray, calibration: str
) -> None:
    dst = fp32_onnx.with_name(f"model.int8-{calibration}.onnx")
    batches = (make_images(32, seed=2000 + i)[0] for i in range(4))
    quantize_int8(fp32_onnx, dst, ImageCalibrationReader(batches, "images"),
                  calibration=calibration)  # fmt: skip
    model = onnx.load(str(dst))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    stored = [inits[n.input[2]] for n in dq if n.input[0] in inits]
    weights = [z for z in stored if z.dtype != np.int32]  # int32: the quantized biases
    activations = [inits[n.input[2]] for n in dq if n.input[0] not in inits]
    assert weights and all(z.dtype == np.int8 and not z.any() for z in weights)
    assert activations and all(z.dtype == np.uint8 for z in activations)
    ref, got = run_ort(fp32_onnx, eval_images), run_ort(dst, eval_images)
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.90


def test_excluded_nodes_stay_in_float(fp32_onnx: Path) -> None:
    names = quantizable_nodes(fp32_onnx)
    assert len(names) >= 3  # two Convs and the Linear
    dst = fp32_onnx.with_name("model.int8-excluded.onnx")
    batches = (make_images(32, seed=2000 + i)[0] for i in range(4))
    quantize_int8(fp32_onnx, dst, ImageCalibrationReader(batches, "images"), exclude=(names[0],))
    model = onnx.load(str(dst))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    (first,) = [n for n in model.graph.node if n.name == names[0]]
    assert producers.get(first.input[1]) != "DequantizeLinear"  # its weight stayed float
    quantized = [n for n in model.graph.node if n.name in names[1:]]
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in quantized)


def test_int8_without_calibration_data_says_so(fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="gave no batch"):
        quantize_int8(fp32_onnx, tmp_path / "x.onnx", ImageCalibrationReader([], "images"))
    assert not (tmp_path / "x.onnx").exists()


def _strict_check(fp32_onnx: Path, min_cosine: float):
    """The real validation of a file against the FP32 model, judged by ``min_cosine`` only."""
    from abrl_deploy.export.validate import Check, ValidationReport, validate_onnx

    images, labels = make_images(64, seed=1000)
    reference = {"logits": run_ort(fp32_onnx, images).astype(np.float64)}
    calls = []

    def check(path: Path) -> ValidationReport:
        m = validate_onnx(path, reference, images, labels, "int8").metrics
        calls.append(m["min_cosine"])
        return ValidationReport((Check("min_cosine", m["min_cosine"], min_cosine, True),), m)

    return check, calls


def _batches():
    return [make_images(32, seed=2000 + i)[0] for i in range(4)]


def test_int8_that_passes_keeps_every_layer_quantized(fp32_onnx: Path) -> None:
    check, calls = _strict_check(fp32_onnx, 0.5)
    dst = fp32_onnx.with_name("model.int8-pass.onnx")
    report, record = quantize_within_tolerance(fp32_onnx, dst, _batches(), check, form="cpu",
                                               calibration="minmax")  # fmt: skip
    assert report.passed and record["kept_in_float"] == [] and record["sensitivity"] == {}
    assert len(calls) == 1  # no probing when the first attempt passes


def test_int8_that_misses_keeps_the_most_sensitive_layers_in_float(fp32_onnx: Path) -> None:
    full, _ = _strict_check(fp32_onnx, 0.0)
    dst = fp32_onnx.with_name("model.int8-fallback.onnx")
    quantize_int8(fp32_onnx, dst, ImageCalibrationReader(_batches(), "images"))
    full_cosine = full(dst).metrics["min_cosine"]
    # A tolerance the fully quantized file misses but the float model meets.
    check, _ = _strict_check(fp32_onnx, (full_cosine + 1.0) / 2)
    report, record = quantize_within_tolerance(fp32_onnx, dst, _batches(), check, form="cpu",
                                               calibration="minmax")  # fmt: skip
    assert report.passed and record["kept_in_float"]
    sensitivity = record["sensitivity"]
    assert set(sensitivity) == set(quantizable_nodes(fp32_onnx))
    ranked = sorted(sensitivity, key=sensitivity.__getitem__, reverse=True)
    assert record["kept_in_float"] == ranked[: len(record["kept_in_float"])]
    assert [a["passed"] for a in record["attempts"]][-1] and not record["attempts"][0]["passed"]
    model = onnx.load(str(dst))  # the file written is the one that passed: those layers in float
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in record["kept_in_float"]:
            assert producers.get(node.input[1]) != "DequantizeLinear", node.name


def test_int8_that_nothing_rescues_fails_naming_the_best_attempt(fp32_onnx: Path) -> None:
    check, _ = _strict_check(fp32_onnx, 1.5)  # no file can have cosine above 1
    with pytest.raises(ExportError, match=r"failed even with all 3 Conv/Gemm layers.*min_cosine"):
        quantize_within_tolerance(fp32_onnx, fp32_onnx.with_name("x.onnx"), _batches(), check,
                                  form="cpu", calibration="minmax")  # fmt: skip
