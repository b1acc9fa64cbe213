"""`abrl bench` end to end, in-process: run directories and their ONNX files on torch and ONNX
Runtime, third-party ONNX models described by flags (NCHW and NHWC), the verdict on a wide twin,
skipped backends, the JSON schema, and refusals."""

from __future__ import annotations

import json
import shutil

import jsonschema
import numpy as np
import pytest
from card_model import write_cnn
from typer.testing import CliRunner

from abrl_deploy.bench.report import schema
from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app

runner = CliRunner()
FAST = ["--warmup", "1", "--min-iters", "10", "--min-seconds", "0", "--block", "2", "--quiet"]
DIGITS = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]  # third-party flags


def bench(*args: str):
    return runner.invoke(app, ["bench", *FAST, *args])


def load_report(path):
    report = json.loads(path.read_text())
    jsonschema.validate(report, schema())
    return report


def bench_ok(models, out, *args: str):
    """Bench ``models`` (paths) writing ``out``; assert success, return (result, report)."""
    r = bench(*map(str, models), "--report", str(out), *args)
    assert r.exit_code == 0, r.output
    return r, load_report(out)


@pytest.fixture(scope="module")
def run_report(trained_run, tmp_path_factory):
    """A run exported to ONNX vs a copy without ONNX (exported on the fly), on torch + ort-cpu."""
    root = tmp_path_factory.mktemp("bench")
    model, twin = root / "model", root / "twin"
    shutil.copytree(trained_run, model)
    shutil.copytree(trained_run, twin)
    assert runner.invoke(app, ["export", str(model)]).exit_code == 0
    out = root / "bench.json"
    r = bench(str(model), "--baseline", str(twin), "--backend", "torch,ort-cpu", "--batch", "16",
              "--report", str(out), "--markdown", str(root / "bench.md"),
              "--plot", str(root / "bench.png"))  # fmt: skip
    assert r.exit_code == 0, r.output
    return load_report(out), root, ModelCard.load(trained_run / "card.json")


def test_run_dirs_on_torch_and_onnxruntime(run_report):
    report, root, card = run_report
    assert report["backends"]["measured"] == ["torch", "ort-cpu"]
    assert [(r["model"], r["backend"]) for r in report["results"]] == [
        ("model", "torch"), ("twin", "torch"), ("model", "ort-cpu"), ("twin", "ort-cpu")
    ]  # fmt: skip
    models = {m["label"]: m for m in report["models"]}
    assert not models["model"]["exported_on_the_fly"] and models["twin"]["exported_on_the_fly"]
    for r in report["results"]:
        # the whole test split with the card's preprocessing: training's own evaluation
        assert r["accuracy"]["images"] == card.data_splits["test"]
        assert r["accuracy"]["top1"] == pytest.approx(card.metrics["test_top1"], abs=1e-6)
        assert r["accuracy"]["top5"] == pytest.approx(card.metrics["test_top5"], abs=1e-6)
        assert r["agreement"]["reference"] == "torch"
        assert r["agreement"]["top1_flip_rate"] == 0 and r["agreement"]["max_abs_diff"] < 1e-3
        assert r["latency"]["count"] >= 10 and len(r["samples_ms"]) >= 10
        assert r["runner"]["backend"] == r["backend"]
    ort = next(r for r in report["results"] if r["backend"] == "ort-cpu")
    assert ort["runner"]["providers_in_use"] == ["CPUExecutionProvider"]


def test_every_backend_gets_a_comparison_with_its_interval(run_report):
    report = run_report[0]
    rows = report["comparisons"]
    assert {(c["backend"], c["statistic"]) for c in rows} == {
        ("torch", "p50"), ("torch", "p90"), ("ort-cpu", "p50"), ("ort-cpu", "p90")
    }  # fmt: skip
    for c in rows:
        assert c["model"] == "model" and c["baseline"] == "twin"
        assert c["low"] <= c["ratio"] <= c["high"]


@pytest.mark.slow  # a timing property: on a machine shared with other jobs it can be 4x off
def test_identical_models_are_never_found_15_percent_faster(run_report):
    for c in run_report[0]["comparisons"]:
        assert 0.6 < c["ratio"] < 1.6 and c["verdict"] != "SUPPORTED"


def test_markdown_and_plot_are_written(run_report):
    report, root, _ = run_report
    md = (root / "bench.md").read_text()
    assert "| model | torch |" in md and "## Claim: 15% lower latency than twin" in md
    assert (root / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_rejects_a_broken_report(run_report):
    report = json.loads(json.dumps(run_report[0]))
    report["comparisons"][0]["verdict"] = "PROBABLY"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema())
    del report["environment"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema())


def test_existing_report_is_not_overwritten(run_report):
    _, root, _ = run_report
    before = (root / "bench.json").read_bytes()
    r = bench(str(root / "model"), "--backend", "ort-cpu", "--report", str(root / "bench.json"))
    assert r.exit_code == 2 and "--force" in r.output
    assert (root / "bench.json").read_bytes() == before


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    root = tmp_path_factory.mktemp("third")
    return {
        "narrow": write_cnn(root / "narrow.onnx", width=8),
        "wide": write_cnn(root / "wide.onnx", width=96),
        "nhwc": write_cnn(root / "narrow_nhwc.onnx", width=8, layout="NHWC"),
        "dynamic": write_cnn(root / "dynamic.onnx", width=8, size="S"),
        "batch1": write_cnn(root / "batch1.onnx", width=8, batch=1),
        "root": root,
    }


@pytest.mark.parametrize(
    ("model", "baseline", "expected"),
    [("narrow", "wide", "SUPPORTED"), ("wide", "narrow", "REFUTED")],
)
def test_a_much_wider_twin_gets_the_verdict_it_should(third_party, model, baseline, expected):
    out = third_party["root"] / f"{model}-vs-{baseline}.json"
    args = ["--baseline", str(third_party[baseline]), "--backend", "ort-cpu", "--batch", "16"]
    r, report = bench_ok([third_party[model]], out, *args, *DIGITS, "--limit", "64")
    assert [c["verdict"] for c in report["comparisons"]] == [expected, expected]
    assert expected in r.output


def test_third_party_model_states_what_was_assumed(third_party):
    out = third_party["root"] / "narrow.json"
    _, report = bench_ok([third_party["narrow"]], out, *DIGITS, "--backend", "ort-cpu",
                         "--batch", "8", "--limit", "40")  # fmt: skip
    (m,) = report["models"]
    assert m["card"] == "flags" and m["layout"] == "NCHW" and m["input_size"] == 16
    assert m["assumed"] == {
        "layout": "the graph input shape", "input_size": "the graph input shape",
        "mean": "--mean/--std", "std": "--mean/--std", "dataset": "the default (digits)",
        "num_classes": "the graph output shape", "crop": "the input size (centre crop)",
        "resize": "the default: shorter side to the input size (no resize when images have it)",
        "interpolation": "the default (bilinear)", "scale": "the default (pixels / 255)",
        "channel_order": "the default (RGB)",
    }  # fmt: skip
    (res,) = report["results"]
    assert res["accuracy"]["images"] == 40
    assert res["agreement"]["reference"] == "ort-cpu"  # no run directory: no PyTorch reference
    assert report["comparisons"] == []


def test_nhwc_model_matches_its_nchw_twin(third_party):
    """Same weights, NHWC input: the bench transposes the images, so scores are identical."""
    reports = []
    for name in ("narrow", "nhwc"):
        out = third_party["root"] / f"layout-{name}.json"
        _, report = bench_ok([third_party[name]], out, *DIGITS, "--backend", "ort-cpu",
                             "--batch", "8", "--limit", "40")  # fmt: skip
        reports.append(report)
    assert reports[1]["models"][0]["layout"] == "NHWC"
    acc = [rep["results"][0]["accuracy"] for rep in reports]
    assert acc[0] == acc[1]


def test_third_party_model_without_flags_fails_clearly(third_party):
    r = bench(str(third_party["narrow"]), "--backend", "ort-cpu")
    assert r.exit_code == 2
    assert "has no abrl model card" in r.output and "--mean R,G,B and --std R,G,B" in r.output
    r = bench(str(third_party["dynamic"]), "--backend", "ort-cpu", *DIGITS)
    assert r.exit_code == 2 and "--input-size N" in r.output
    r = bench(str(third_party["dynamic"]), "--backend", "ort-cpu", *DIGITS, "--input-size", "16",
              "--limit", "16", "--batch", "8")  # fmt: skip
    assert r.exit_code == 0, r.output


def test_fixed_batch_model_needs_its_batch(third_party):
    r = bench(str(third_party["batch1"]), "--backend", "ort-cpu", *DIGITS, "--limit", "8")
    assert r.exit_code == 2 and "fixed batch of 1; run with --batch 1" in r.output
    r = bench(str(third_party["batch1"]), "--backend", "ort-cpu", *DIGITS, "--limit", "8",
              "--batch", "1")  # fmt: skip
    assert r.exit_code == 0, r.output


def test_unavailable_backends_are_skipped_with_reasons_or_refused(third_party, monkeypatch):
    import abrl_deploy.bench.api as api

    def fake(backend):
        return None if backend == "ort-cpu" else f"{backend} is not here (test)"

    monkeypatch.setattr(api, "unavailable_reason", fake)
    out = third_party["root"] / "skipped.json"
    r, report = bench_ok([third_party["narrow"]], out, *DIGITS, "--batch", "8", "--limit", "16")
    assert report["backends"]["measured"] == ["ort-cpu"]
    skipped = {s["backend"]: s["reason"] for s in report["backends"]["skipped"]}
    assert skipped == {b: f"{b} is not here (test)" for b in
                       ("torch", "torch-bf16", "torch-cuda", "ort-cuda", "ort-trt", "ov-cpu",
                        "trt")}  # fmt: skip
    assert "skipped trt: trt is not here (test)" in r.output
    r = bench(str(third_party["narrow"]), *DIGITS, "--backend", "ort-cpu,trt")
    assert r.exit_code == 2 and "backend trt cannot run here: trt is not here (test)" in r.output


def test_backend_without_its_artifact_is_refused_when_asked(third_party):
    r = bench(str(third_party["narrow"]), *DIGITS, "--backend", "torch")
    assert r.exit_code == 2 and "runs a run directory's checkpoint, not this onnx file" in r.output
    r = bench(str(third_party["narrow"]), *DIGITS, "--backend", "cuda-magic")
    assert r.exit_code == 2 and "unknown backend cuda-magic" in r.output


def test_nhwc_runner_gives_the_nchw_logits(third_party):
    """The NHWC twin (same weights, a Transpose in front) fed to_layout(images) gives the NCHW
    model's logits: a reshape in place of the transpose would not."""
    from abrl_deploy.bench.images import to_layout
    from abrl_deploy.runtime import OrtRunner

    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    with OrtRunner(third_party["narrow"]) as a, OrtRunner(third_party["nhwc"]) as b:
        want = a.infer(x)["scores"]
        got = b.infer(to_layout(x, "NHWC"))["scores"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want).max() > 1e-3


def test_third_party_mean_std_renormalise_the_same_pixels(trained_run):
    """Images for a card with other mean/std are the same pixels, normalised the card's way."""
    from abrl_deploy.bench.images import eval_images
    from abrl_deploy.training.data import get_dataset_spec

    card = ModelCard.load(trained_run / "card.json")
    other = card.replace(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    x, y = eval_images(card, None, 32)
    x2, y2 = eval_images(other, None, 32)
    ds = get_dataset_spec(card.dataset)
    shape = (1, 3, 1, 1)
    pixels = x * np.reshape(ds.std, shape) + np.reshape(ds.mean, shape)
    pixels2 = x2 * np.reshape(other.std, shape) + np.reshape(other.mean, shape)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(pixels2, pixels, atol=1e-5)
    assert not np.allclose(x, x2)


def test_a_backend_that_fails_to_open_is_skipped_by_default(third_party, monkeypatch):
    """onnxruntime-gpu lists CUDA without a GPU, then falls back: by default that backend is
    skipped with the runner's reason; asked for by name, it is an error."""
    import abrl_deploy.bench.api as api
    from abrl_deploy.errors import RuntimeBackendError

    real = api.make_runner

    def flaky(backend, path, **kw):
        runner = real("ort-cpu", path, **kw)
        if backend == "ort-cuda":

            def refuse():
                raise RuntimeBackendError("ort-cuda: asked for CUDA but runs on CPU (test)")

            runner.open_impl = refuse
        return runner

    monkeypatch.setattr(api, "make_runner", flaky)
    here = ("ort-cpu", "ort-cuda")
    monkeypatch.setattr(api, "unavailable_reason", lambda b: None if b in here else "absent")
    out = third_party["root"] / "flaky.json"
    _, report = bench_ok([third_party["narrow"]], out, *DIGITS, "--batch", "8", "--limit", "16")
    assert report["backends"]["measured"] == ["ort-cpu"]
    reason = "ort-cuda: asked for CUDA but runs on CPU (test)"
    skipped = report["backends"]["skipped"]
    assert {"backend": "ort-cuda", "model": None, "reason": reason} in skipped
    r = bench(str(third_party["narrow"]), *DIGITS, "--backend", "ort-cuda", "--limit", "16")
    assert r.exit_code == 2 and "runs on CPU (test)" in r.output


def test_flags_that_contradict_a_card_and_repeated_models_are_refused(run_report):
    _, root, _ = run_report
    r = bench(str(root / "model"), "--backend", "ort-cpu", "--mean", "0.1,0.1,0.1")
    assert r.exit_code == 2 and "--mean (0.1, 0.1, 0.1) contradicts the model card" in r.output
    r = bench(str(root / "model"), str(root / "model") + "/", "--backend", "ort-cpu")
    assert r.exit_code == 2 and "given twice" in r.output


def test_an_onnx_file_gets_no_torch_row_and_its_reference_is_named(run_report, tmp_path):
    """Benching run/model.onnx must not time the run's checkpoint under the file's label (for an
    INT8 file that row would be FP32 weights); the checkpoint is only the named reference."""
    root = run_report[1]
    onnx = root / "model" / "model.onnx"
    refused = bench(str(onnx), "--backend", "torch")
    assert refused.exit_code == 2 and "not this onnx file" in refused.output
    _, report = bench_ok([onnx], tmp_path / "b.json", "--batch", "16")
    # every backend that runs ONNX files here (ort-cpu, and ov-cpu where OpenVINO is installed)
    assert {r["backend"] for r in report["results"]} <= {"ort-cpu", "ov-cpu"}
    assert "ort-cpu" in {r["backend"] for r in report["results"]}
    skipped = [s for s in report["backends"]["skipped"] if s["backend"] == "torch"]
    assert skipped and "not this onnx file" in skipped[0]["reason"]
    for row in report["results"]:
        assert row["agreement"]["reference"] == "torch reference: model fp32"
    assert report["models"][0]["reference_run"] == str(root / "model")


def test_a_corrupt_card_beside_an_onnx_file_is_reported(run_report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_report[1] / "model", copy)
    (copy / "card.json").write_text("{not json")
    r, report = bench_ok([copy / "model.onnx"], tmp_path / "b.json", "--batch", "16")
    assert any("card.json" in w and "cannot be read" in w for w in report["warnings"])
    assert "cannot be read" in r.output  # in the terminal too
    assert report["results"][0]["agreement"]["reference"] == "ort-cpu"
