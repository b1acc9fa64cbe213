"""The ov-cpu backend (OpenVINO) and torch-bf16: each runs what it names and states the precision
it really ran in (issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from card_model import write_card_model

pytest.importorskip("openvino")

from abrl_deploy.runtime.backends import make_runner  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_card_model(tmp_path_factory.mktemp("ov") / "model.onnx")


def _images(n=16, size=16):
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


def test_openvino_f32_equals_onnxruntime_and_says_f32(model):
    x = _images()
    with (
        make_runner("ort-cpu", model) as ort,
        make_runner("ov-cpu", model, ov_precision="f32") as ov,
    ):
        ref, got = ort.infer(x)["logits"], ov.infer(x)["logits"]
        assert ov.describe()["inference_precision"] == "f32"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_outputs_keep_their_onnx_names_on_an_fp16_file(model, tmp_path):
    from abrl_deploy.export.quantize import convert_fp16

    fp16 = tmp_path / "model.fp16.onnx"
    convert_fp16(model, fp16)  # its output is a Cast that OpenVINO names graph_output_cast_0
    x = _images()
    with make_runner("ort-cpu", fp16) as ort, make_runner("ov-cpu", fp16, ov_precision="f32") as ov:
        assert ov.output_names == ort.output_names == ("logits",)
        np.testing.assert_allclose(ov.infer(x)["logits"], ort.infer(x)["logits"], atol=2e-2)


def test_openvino_precision_is_read_back_not_assumed(model):
    x = _images()
    with make_runner("ov-cpu", model, ov_precision="bf16") as ov:
        info = ov.describe()
        got = ov.infer(x)["logits"]
    assert info["precision_asked"] == "bf16"
    assert info["inference_precision"] in ("bf16", "f32")  # f32 where the CPU has no bf16
    with make_runner("ort-cpu", model) as ort:
        ref = ort.infer(x)["logits"]
    assert np.abs(got - ref).max() < 0.1 * max(1.0, np.abs(ref).max())
    with make_runner("ov-cpu", model) as ov:  # auto: whatever OpenVINO picked, stated
        assert ov.describe()["inference_precision"] in ("bf16", "f32", "f16")


def test_predictor_serves_on_openvino(model):
    from abrl_deploy import Predictor

    pixels = (np.random.default_rng(1).uniform(0, 255, (4, 20, 20, 3))).astype(np.uint8)
    with Predictor(model, backend="ort-cpu") as a, Predictor(model, backend="ov-cpu") as b:
        assert b.backend == "ov-cpu" and b.describe()["inference_precision"]
        np.testing.assert_allclose(b.logits(pixels), a.logits(pixels), rtol=1e-2, atol=1e-2)


def test_bench_rows_state_the_precision_they_ran_in(trained_run, tmp_path):
    from typer.testing import CliRunner

    from abrl_deploy.cli import app

    out = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", str(trained_run), "--backend", "torch,torch-bf16,ov-cpu",
                                 "--ov-precision", "f32", "--batch", "16", "--limit", "64",
                                 "--warmup", "1", "--min-iters", "4", "--min-seconds", "0",
                                 "--block", "2", "--quiet", "--report", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = {x["backend"]: x for x in json.loads(out.read_text())["results"]}
    assert rows["torch"]["runner"]["precision"] == "fp32"
    assert rows["torch-bf16"]["runner"]["precision"] == "bf16 autocast"
    assert rows["ov-cpu"]["runner"]["inference_precision"] == "f32"
    # bf16 really ran: its logits differ from fp32's, by a bf16-sized amount
    assert 0 < rows["torch-bf16"]["agreement"]["max_abs_diff"] < 1.0
    assert rows["ov-cpu"]["agreement"]["max_abs_diff"] < 1e-3
    assert "torch-bf16 (bf16 autocast)" in r.output
