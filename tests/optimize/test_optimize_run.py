"""abrl optimize end to end on a small trained digits run: every variant is built, scored and
timed; the choice follows the rule on the report's own numbers; the shipped file is the chosen
graph with the choice in its card; reruns reuse the exports and refuse to overwrite."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from abrl_deploy import Predictor
from abrl_deploy.bench.protocol import Protocol
from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app
from abrl_deploy.errors import ConfigError
from abrl_deploy.machine import signature
from abrl_deploy.optimize import OptimizeSpec, run_optimize
from abrl_deploy.optimize.candidates import REFERENCE

FAST = Protocol(warmup=1, min_iters=6, min_seconds=0.0, block=2, min_blocks=3)


def _spec(run_dir, **kw):
    kw = {"precisions": ("fp32", "int8"), "backends": ("ort-cpu", "ov-cpu"), "batch": 16,
          "protocol": FAST, "threads": 1, **kw}  # fmt: skip
    return OptimizeSpec(run_dir=run_dir, **kw)


@pytest.fixture(scope="module")
def optimized(trained_run, tmp_path_factory):
    import shutil

    run = tmp_path_factory.mktemp("opt") / "run"
    shutil.copytree(trained_run, run)
    return run, run_optimize(_spec(run))


def _torch_top1(run, split: str) -> float:
    from abrl_deploy.export.images import run_images
    from abrl_deploy.training.checkpoint import load_classifier

    model, card = load_classifier(run)
    images, labels = run_images(card, split, 10**9, None)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return float((logits.argmax(1) == labels).mean() * 100)


def test_the_choice_is_made_on_test_images_no_method_trained_on(optimized):
    """Issue 20: not the validation split (ABRL's outer loss trains on it) but the select half
    of the test split; the holdout half is reported. The halves partition the test split."""
    from abrl_deploy.export.images import run_images

    run, report = optimized
    ref = next(r for r in report["candidates"] if r["label"] == REFERENCE)
    assert report["rule"]["reference_select_top1"] == pytest.approx(_torch_top1(run, "select"))
    assert ref["holdout"]["top1"] == pytest.approx(_torch_top1(run, "holdout"))
    card = ModelCard.load(run / "card.json")
    n = card.data_splits["test"]
    assert report["rule"]["select_images"] + report["rule"]["holdout_images"] == n
    assert report["rule"]["chosen_on"] == "select half of the test split"
    test, select, holdout = (run_images(card, s, 10**9, None)[0] for s in
                             ("test", "select", "holdout"))  # fmt: skip
    as_set = lambda a: {x.tobytes() for x in a}  # noqa: E731
    assert not as_set(select) & as_set(holdout) and as_set(select) | as_set(holdout) == as_set(test)
    val = as_set(run_images(card, "val", 10**9, None)[0])
    assert not val & as_set(select)
    assert ref["speedup"]["p50"] == pytest.approx(1.0)


def test_the_choice_is_the_fastest_variant_within_the_budget(optimized):
    _, report = optimized
    rows = report["candidates"]
    ref_top1 = report["rule"]["reference_select_top1"]
    eligible = [r for r in rows if r["shippable"] and ref_top1 - r["select"]["top1"] <= 0.5 + 1e-9]
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["label"] == report["chosen"]
    assert chosen is min(eligible, key=lambda r: r["latency"]["p50_ms"])
    files = {r["file_precision"] for r in rows if r["shippable"]}
    assert files == {"fp32", "int8"}
    ov = [r for r in rows if r["backend"] == "ov-cpu"]
    assert ov and all(r["runtime_precision"].endswith(f"{r['runner']['precision_asked']} compute")
                      for r in ov)  # fmt: skip
    for r in rows:  # every figure measured, not assumed
        assert r["latency"]["count"] >= FAST.min_iters and r["select"]["images"] > 0


def test_the_shipped_file_is_the_chosen_graph_and_its_card_records_the_choice(optimized):
    run, report = optimized
    chosen = next(r for r in report["candidates"] if r["chosen"])
    shipped, source = onnx.load(str(run / "model.deploy.onnx")), onnx.load(chosen["file"])
    assert shipped.graph == source.graph
    props = {p.key: p.value for p in shipped.metadata_props}
    card = ModelCard.from_onnx_metadata(props)
    assert card.deploy["choice"]["backend"] == chosen["backend"]
    assert card.deploy["machine"] == signature()
    assert card.deploy["holdout_top1"] == chosen["holdout"]["top1"]
    assert card.deploy["chosen_on"] == "select half of the test split"
    assert card.export["precision"] == chosen["file_precision"]
    with Predictor(run / "model.deploy.onnx") as p:
        assert p.backend == chosen["backend"]
        assert p.describe()["chosen_by"]["tool"] == "abrl optimize"
    saved = json.loads((run / "optimize.json").read_text())
    assert saved["chosen"] == report["chosen"]
    assert report["chosen"] in (run / "optimize.md").read_text()
    assert (run / "optimize.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_refuses_to_overwrite_then_reuses_the_exports_with_force(optimized):
    run, _ = optimized
    before = (run / "model.deploy.onnx").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="--force"):
        run_optimize(_spec(run))
    assert (run / "model.deploy.onnx").stat().st_mtime_ns == before
    int8 = (run / "model.int8.onnx").stat().st_mtime_ns
    report = run_optimize(_spec(run, force=True, backends=("ort-cpu",)))
    assert any(n.startswith("reused") and "model.int8.onnx" in n for n in report["notes"])
    assert (run / "model.int8.onnx").stat().st_mtime_ns == int8


def test_a_variant_file_from_something_else_is_refused_not_timed(run_dir):
    import shutil

    from abrl_deploy.export import ExportSpec, export

    export(ExportSpec(run_dir=run_dir))
    shutil.copy(run_dir / "model.onnx", run_dir / "model.int8.onnx")  # fp32 under the int8 name
    with pytest.raises(ConfigError, match="model.int8.onnx is not this run's int8 export for "
                       "CPUs: it is a fp32 file; export it again with abrl export "):  # fmt: skip
        run_optimize(_spec(run_dir))
    with pytest.raises(ConfigError, match="it is a fp32 file"):  # --force does not overwrite it
        run_optimize(_spec(run_dir, force=True))
    assert not (run_dir / "model.deploy.onnx").exists()


def test_cli_prints_the_choice_and_its_speedup(run_dir):
    result = CliRunner().invoke(app, ["optimize", str(run_dir), "--precisions", "fp32",
                                      "--backends", "ort-cpu", "--batch", "16",
                                      "--min-seconds", "0", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "chosen: ort-cpu · fp32 file" in result.output
    assert "PyTorch eager fp32 measured in this run" in result.output
    assert (run_dir / "model.deploy.onnx").is_file()
    bad = CliRunner().invoke(app, ["optimize", str(run_dir), "--max-drop", "-1"])
    assert bad.exit_code != 0 and "--max-drop -1" in bad.output
    assert np.isfinite(json.loads((run_dir / "optimize.json").read_text())["candidates"][0]
                       ["latency"]["p50_ms"])  # fmt: skip


def test_no_onnx_variant_that_ran_is_said_as_such_not_as_a_budget_problem(run_dir):
    spec = _spec(run_dir, precisions=("fp32",), backends=("torch-bf16",), bf16="on")
    with pytest.raises(ConfigError, match="no ONNX variant of .* could run here") as err:
        run_optimize(spec)
    assert "--max-drop" not in str(err.value)
    assert not (run_dir / "model.deploy.onnx").exists()
