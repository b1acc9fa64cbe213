"""ONNX export end to end: the ladder, parity, metadata, dynamic batch, a broken export caught."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app
from abrl_deploy.errors import ExportError
from abrl_deploy.export import ExportSpec, export
from abrl_deploy.export.images import run_images
from abrl_deploy.export.onnx import trace
from abrl_deploy.export.validate import validate_onnx
from abrl_deploy.inspect import describe
from abrl_deploy.runtime import OrtRunner
from abrl_deploy.training.checkpoint import load_classifier

runner = CliRunner()


def torch_logits(run_dir, x: np.ndarray) -> np.ndarray:
    model, _ = load_classifier(run_dir)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_export_verifies_and_embeds_the_card(run_dir):
    result = runner.invoke(app, ["export", str(run_dir), "--validation-images", "64"])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 100.00%" in result.output
    path = run_dir / "model.onnx"
    card = ModelCard.from_onnx_metadata(
        {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    )
    run_card = ModelCard.load(run_dir / "card.json")
    assert card.replace(export={}) == run_card  # the run's card, plus what export added
    assert card.export["exporter"] == "dynamo" and card.export["opset"] == 18
    assert card.export["validation"]["max_abs_diff"] < 1e-3
    assert card.export["validation"]["top1_agreement"] == 1.0


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_both_exporters_match_pytorch_at_batch_1_7_64(run_dir, tmp_path, exporter):
    model, card = load_classifier(run_dir)
    path = tmp_path / f"{exporter}.onnx"
    trace(model, path, exporter, size=card.input_size, opset=18, outputs=("logits", "features"))
    onnx.checker.check_model(str(path), full_check=True)
    images, _ = run_images(card, "test", 64, None)
    with OrtRunner(path) as ort:
        for n in (1, 7, 64):
            out = ort.infer(images[:n])
            assert out["logits"].shape == (n, card.num_classes)
            assert out["features"].shape == (n, card.feature_dim)
            np.testing.assert_allclose(out["logits"], torch_logits(run_dir, images[:n]), atol=1e-4)


def test_features_output_on_request(run_dir, tmp_path):
    out = tmp_path / "with-features.onnx"
    spec = ExportSpec(run_dir, out=out, outputs=("logits", "features"), validation_images=32)
    result = export(spec)
    assert result.validation["features_max_abs_diff"] < 1e-3
    assert [o["name"] for o in describe(out)["outputs"]] == ["logits", "features"]


class DataDependent(torch.nn.Module):
    """Eager and traced graphs differ: the scale is read from the data as a Python float."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward_features(self, x):
        return self.model.forward_features(x) * float(x.abs().amax())

    def forward_head(self, z):
        return self.model.forward_head(z)


def test_broken_export_is_caught_and_not_written(run_dir, monkeypatch):
    import abrl_deploy.training.checkpoint as ckpt

    real = ckpt.load_classifier
    monkeypatch.setattr(ckpt, "load_classifier", lambda p: (DataDependent(real(p)[0]), real(p)[1]))
    with pytest.raises(ExportError) as err:
        export(ExportSpec(run_dir, validation_images=32))
    message = str(err.value)
    assert "dynamo:" in message and "torchscript:" in message
    assert "max_abs_diff" in message or "top1_agreement" in message
    assert not (run_dir / "model.onnx").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_validation_fails_loudly_on_a_wrong_model(run_dir, tmp_path):
    model, card = load_classifier(run_dir)
    path = tmp_path / "m.onnx"
    trace(model, path, "torchscript", size=card.input_size, opset=18, outputs=("logits",))
    images, labels = run_images(card, "test", 32, None)
    wrong = {"logits": torch_logits(run_dir, images).astype(np.float64) + 0.5}
    report = validate_onnx(path, wrong, images, labels, "fp32")
    assert not report.passed
    assert any(f.startswith("max_abs_diff") for f in report.failures())


def test_existing_artifact_needs_force(run_dir):
    (run_dir / "model.onnx").write_bytes(b"precious")
    result = runner.invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 2 and "--force" in result.output
    assert (run_dir / "model.onnx").read_bytes() == b"precious"


def test_openvino_runs_the_file_with_matching_outputs(run_dir):
    ov = pytest.importorskip("openvino", reason="second runtime: pip install openvino")
    export(ExportSpec(run_dir, validation_images=32))
    _, card = load_classifier(run_dir)
    images, _ = run_images(card, "test", 16, None)
    # f32 explicitly: OpenVINO otherwise computes in bf16 on CPUs that have it.
    hint = {"INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(str(run_dir / "model.onnx"), "CPU", hint)
    got = compiled(images)[compiled.output(0)]
    np.testing.assert_allclose(got, torch_logits(run_dir, images), atol=1e-3)


def test_info_on_each_artifact(run_dir):
    export(ExportSpec(run_dir, validation_images=32))
    for path, kind in ((run_dir, "run"), (run_dir / "model.onnx", "onnx")):
        result = runner.invoke(app, ["info", str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert f'"kind": "{kind}"' in result.output
    sidecar = run_dir / "model.engine.json"
    card = ModelCard.load(run_dir / "card.json")
    sidecar.write_text(card.replace(export={"format": "trt", "precision": "fp16"}).to_json())
    d = describe(run_dir / "model.engine")
    assert d["kind"] == "tensorrt" and d["precision"] == "fp16"
    bad = runner.invoke(app, ["info", str(run_dir / "card.json")])
    assert bad.exit_code == 1 and "not a run directory" in bad.output


def test_weights_that_do_not_match_the_card_are_refused(run_dir):
    from abrl_deploy.errors import RunDirError

    data = bytearray((run_dir / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (run_dir / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(RunDirError, match="checkpoint_sha256"):
        load_classifier(run_dir)
