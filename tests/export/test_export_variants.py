"""FP16 and INT8 variants through `abrl export`; the TensorRT error where TensorRT is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app
from abrl_deploy.inspect import describe

runner = CliRunner()


@pytest.mark.parametrize("precision, agreement", [("fp16", 0.98), ("int8", 0.90)])
def test_precision_variant_is_verified_and_self_describing(run_dir, precision, agreement):
    args = ["export", str(run_dir), "--precision", precision, "--validation-images", "128",
            "--calibration-images", "64"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    path = run_dir / f"model.{precision}.onnx"
    d = describe(path)
    assert d["precision"] == precision
    assert [i["dtype"] for i in d["inputs"]] == ["float32"]  # float32 IO in every variant
    card = ModelCard.from_dict(d["card"])
    assert card.export["precision"] == precision
    assert card.export["validation"]["top1_agreement"] >= agreement
    assert "top1_change_vs_fp32" in card.export
    if precision == "int8":  # the CPU form: uint8 activations, int8 weights; recorded
        assert card.export["int8"]["form"] == "cpu"
        assert card.export["int8"]["activations"].startswith("uint8")
    assert not (run_dir / "model.onnx").exists()  # the fp32 rung stayed a temporary


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT present")
def test_trt_without_tensorrt_exits_2_with_the_install_hint(run_dir):
    result = runner.invoke(app, ["export", str(run_dir), "--format", "trt"])
    assert result.exit_code == 2
    assert "TensorRT is not installed" in result.output and "abrl[gpu]" in result.output
    assert not (run_dir / "model.engine").exists()


@pytest.mark.tensorrt
def test_trt_engine_and_sidecar(run_dir):
    result = runner.invoke(app, ["export", str(run_dir), "--format", "trt", "--precision", "fp16",
                                 "--batch-range", "1,8,64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = describe(run_dir / "model.engine")
    assert d["kind"] == "tensorrt" and d["size_bytes"] > 0
    assert d["card"]["export"]["batch_range"] == [1, 8, 64]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch-range", "64,1"], "--batch-range"),
        (["--batch-range", "8,4,16"], "batch_range"),
        (["--outputs", "features"], "outputs"),
        (["--opset", "9"], "opset"),
    ],
)
def test_bad_options_are_one_line(run_dir, args, fragment):
    result = runner.invoke(app, ["export", str(run_dir), *args])
    assert result.exit_code == 2 and fragment in result.output
    assert result.output.startswith("error:")


def test_not_a_run_directory(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "card.json" in result.output


def _scale_head(run_dir, factor: float) -> None:
    """Multiply the saved head by ``factor`` (logits ~1e7: finite in FP32, inf in FP16) and
    re-sign the card, as a real model with huge logits would be."""
    import hashlib

    from safetensors.torch import load, save

    weights = run_dir / "model.safetensors"
    tensors = load(weights.read_bytes())
    tensors["head.weight"] = tensors["head.weight"] * factor
    tensors["head.bias"] = tensors["head.bias"] * factor
    data = save(tensors, metadata={"format": "pt"})
    weights.write_bytes(data)
    card = ModelCard.load(run_dir / "card.json")
    card.replace(checkpoint_sha256=hashlib.sha256(data).hexdigest()).save(run_dir / "card.json")


def test_a_variant_that_fails_validation_is_refused_and_nothing_is_written(run_dir):
    """A real FP16 file whose logits overflow: the export fails naming the checks it missed, and
    neither the variant nor a temporary folder is left behind."""
    _scale_head(run_dir, 1e6)
    args = ["export", str(run_dir), "--precision", "fp16", "--validation-images", "64"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # a failed export, not a usage error (2)
    assert result.output.startswith("error: fp16 variant failed") and "min_cosine" in result.output
    assert not (run_dir / "model.fp16.onnx").exists()
    assert not list(run_dir.glob(".abrl-export-*"))
    # (the FP32 rung was validated before the variant was made: these weights pass in FP32)


@pytest.mark.parametrize(
    ("fmt", "platform", "form"),
    [("onnx", "onnxruntime_onnx", "cpu"), ("onnx", "tensorrt_plan", "cpu"),
     ("trt", "onnxruntime_onnx", "trt"), ("triton", "onnxruntime_onnx", "cpu"),
     ("triton", "tensorrt_plan", "trt")],
)  # fmt: skip
def test_the_int8_form_follows_the_format(fmt, platform, form):
    """--triton-platform tensorrt_plan once gave --format onnx a TensorRT-form model.int8.onnx,
    which abrl optimize then refused (issue 20)."""
    from abrl_deploy.export.spec import ExportSpec

    spec = ExportSpec(Path("run"), format=fmt, precision="int8", triton_platform=platform)
    assert spec.int8_form == form
