"""FP16 and INT8 variants through `abrl export`; the TensorRT error where TensorRT is absent."""

from __future__ import annotations

import importlib.util

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
