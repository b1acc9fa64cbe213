"""abrl export --format triton: the model repository, its config against Triton's own schema and
the ONNX file, labels, the verified model, overwrite rules and bad options."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app
from abrl_deploy.errors import DependencyError, ExportError
from abrl_deploy.export import ExportSpec, export
from abrl_deploy.export.images import run_images
from abrl_deploy.export.tensorrt import onnx_precision
from abrl_deploy.export.triton import check_config, config_text, load_model_config
from abrl_deploy.runtime import OrtRunner

runner = CliRunner()
FP32 = "TYPE_FP32"


def export_triton(run_dir, repo, *args: str):
    cli = ["export", str(run_dir), "--format", "triton", "--out", str(repo)]
    return runner.invoke(app, [*cli, "--validation-images", "32", *args])


@pytest.fixture(scope="module")
def repo(trained_run, tmp_path_factory):
    """One FP32 export with both outputs; the run directory itself is only read."""
    repo = tmp_path_factory.mktemp("triton") / "models"
    args = ("--outputs", "logits,features", "--batch-range", "1,8,32", "--model-name", "digits")
    result = export_triton(trained_run, repo, *args)
    assert result.exit_code == 0, result.output
    assert f"serve: tritonserver --model-repository {repo}" in result.output
    assert "warning" not in result.output  # the config was validated against Triton's schema
    return repo


def parse_config(model_dir):
    return check_config((model_dir / "config.pbtxt").read_text())


def onnx_io(path) -> dict[str, tuple[int, list[int]]]:
    """name -> (elem_type, dims without the batch axis) of every graph input and output."""
    graph = onnx.load(str(path)).graph
    out = {}
    for v in [*graph.input, *graph.output]:
        t = v.type.tensor_type
        dims = t.shape.dim
        assert dims[0].dim_param and not dims[0].dim_value  # the batch axis is dynamic
        out[v.name] = (t.elem_type, [d.dim_value for d in dims[1:]])
    return out


def test_schema_is_tritons_own():
    config = load_model_config()
    assert config.DESCRIPTOR.full_name == "inference.ModelConfig"
    assert "dynamic_batching" in config.DESCRIPTOR.fields_by_name


def test_repository_layout(repo):
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == [
        "digits/1/model.onnx",
        "digits/card.json",
        "digits/config.pbtxt",
        "digits/labels.txt",
    ]  # fmt: skip  (no temporaries left either)


def test_config_matches_the_onnx_file_and_the_card(repo, trained_run):
    card = ModelCard.load(trained_run / "card.json")
    config = parse_config(repo / "digits")
    assert (config.name, config.platform, config.max_batch_size) == (
        "digits", "onnxruntime_onnx", 32,
    )  # fmt: skip
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    io = onnx_io(repo / "digits" / "1" / "model.onnx")
    tensors = [*config.input, *config.output]
    assert [t.name for t in tensors] == list(io) == ["images", "logits", "features"]
    fp32 = type(config).DESCRIPTOR.fields_by_name["input"].message_type  # ModelInput
    fp32 = fp32.fields_by_name["data_type"].enum_type.values_by_name[FP32].number
    for t in tensors:
        assert t.data_type == fp32 and io[t.name][0] == onnx.TensorProto.FLOAT
        assert list(t.dims) == io[t.name][1], t.name
    s = card.input_size
    expected = {"images": [3, s, s], "logits": [card.num_classes], "features": [card.feature_dim]}
    assert {t.name: list(t.dims) for t in tensors} == expected
    labels = {o.name: o.label_filename for o in config.output}
    assert labels == {"logits": "labels.txt", "features": ""}


def test_labels_and_card(repo, trained_run):
    run_card = ModelCard.load(trained_run / "card.json")
    lines = (repo / "digits" / "labels.txt").read_text().splitlines()
    assert lines == list(run_card.class_names)
    card = ModelCard.load(repo / "digits" / "card.json")
    assert card.replace(export={}) == run_card
    assert card.export["validation"]["top1_agreement"] == 1.0
    assert card.export["triton"]["config_validated"] is True
    assert card.export["triton"]["model_file"] == "1/model.onnx"


def test_model_runs_and_matches_the_plain_export(repo, run_dir):
    export(ExportSpec(run_dir, validation_images=32))
    card = ModelCard.load(run_dir / "card.json")
    images, _ = run_images(card, "test", 32, None)  # 32 = max_batch_size
    with (
        OrtRunner(repo / "digits" / "1" / "model.onnx") as a,
        OrtRunner(run_dir / "model.onnx") as b,
    ):
        got, want = a.infer(images), b.infer(images)
    assert got["features"].shape == (32, card.feature_dim)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5)


def test_existing_model_needs_force_then_int8_replaces_it(run_dir, tmp_path):
    repo, name = tmp_path / "models", "run"  # name: the run directory's
    (repo / name).mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text("precious")
    refused = export_triton(run_dir, repo)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert [p.name for p in repo.rglob("*")] == [name, "config.pbtxt"]
    assert (repo / name / "config.pbtxt").read_text() == "precious"

    result = export_triton(run_dir, repo, "--precision", "int8", "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == [name]  # the old one is gone, no temporaries
    model = repo / name / "1" / "model.onnx"
    assert onnx_precision(model) == "int8"
    config = parse_config(repo / name)
    assert config.name == name and config.max_batch_size == 256  # the default 1,64,256
    assert [t.name for t in config.output] == list(onnx_io(model))[1:] == ["logits"]
    card = ModelCard.load(repo / name / "card.json")
    assert card.export["precision"] == "int8"
    assert card.export["validation"]["top1_agreement"] >= 0.9


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-range", "8,4,2", "MIN<=OPT<=MAX"),
        ("--batch-range", "1,8", "3 comma-separated integers"),
        ("--batch-range", "0,8,32", "MIN<=OPT<=MAX"),
        ("--model-name", "../up", "model_name"),
        ("--max-queue-delay-us", "-1", "max_queue_delay_us"),
    ],
)
def test_bad_options_are_refused(trained_run, tmp_path, option, value, message):
    result = export_triton(trained_run, tmp_path / "models", option, value)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "models").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is here")
def test_plan_without_tensorrt_is_refused_before_any_work(trained_run, tmp_path):
    result = export_triton(trained_run, tmp_path / "models", "--triton-platform", "tensorrt_plan")
    assert result.exit_code == 2 and "TensorRT" in result.output
    assert not (tmp_path / "models").exists()


def test_the_check_rejects_what_triton_would(trained_run):
    card = ModelCard.load(trained_run / "card.json")
    text = config_text(ExportSpec(trained_run, format="triton"), card)
    assert check_config(text).max_batch_size == 256
    for old, new in [
        ("max_batch_size:", "max_batch_sise:"),  # an unknown field
        ("TYPE_FP32", "TYPE_FP33"),  # an unknown enum value
        ("max_batch_size: 256", 'max_batch_size: "a"'),  # a wrong type
        ("preferred_batch_size: [ 64 ]", "preferred_batch_size: [ 64, x ]"),
    ]:
        with pytest.raises(ExportError, match="not a valid Triton ModelConfig"):
            check_config(text.replace(old, new, 1))


def test_without_tritonclient_the_export_warns(run_dir, tmp_path, monkeypatch):
    import abrl_deploy.export.triton as triton

    def missing():
        raise DependencyError("tritonclient is not installed: pip install tritonclient")

    monkeypatch.setattr(triton, "load_model_config", missing)
    result = export_triton(run_dir, tmp_path / "models")
    assert result.exit_code == 0, result.output
    assert "warning: config.pbtxt was not validated" in result.output
    card = ModelCard.load(tmp_path / "models" / "run" / "card.json")
    assert card.export["triton"]["config_validated"] is False


@pytest.mark.tensorrt
def test_tensorrt_plan_repository(run_dir, tmp_path):
    repo = tmp_path / "models"
    result = export_triton(
        run_dir, repo, "--triton-platform", "tensorrt_plan", "--precision", "fp16"
    )
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["run/1/model.plan", "run/card.json", "run/config.pbtxt", "run/labels.txt"]
    config = parse_config(repo / "run")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 256
    card = ModelCard.load(repo / "run" / "card.json")
    assert card.export["format"] == "trt" and card.export["engine_validation"]["images"] == 32
