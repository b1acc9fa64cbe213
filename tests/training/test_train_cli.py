"""`abrl train` end to end, in-process with CliRunner, on every method and every dataset layout."""

from __future__ import annotations

import json

import datafixtures
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from abrl_deploy.card import ModelCard
from abrl_deploy.cli import app
from abrl_deploy.training.checkpoint import RUN_FILES, load_classifier
from abrl_deploy.training.config import BACKBONES, DATASETS, METHODS
from abrl_deploy.training.data import DATASET_NAMES, load_dataset
from abrl_deploy.training.evaluate import evaluate
from abrl_deploy.training.methods import method_names

FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--quiet", "--device", "cpu"]
runner = CliRunner()


def train(out, *args: str):
    return runner.invoke(app, ["train", "--out", str(out), *FAST, *args])


def check_run_dir(out, method: str, num_classes: int, epochs: int = 1) -> ModelCard:
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    card = ModelCard.load(out / "card.json")
    assert card.method == method and card.num_classes == num_classes
    assert card.input_size == 16 and card.preprocessing["eval"]["crop"] == 16
    assert set(card.data_splits) == {"train", "val", "test"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for row in rows[-1:] if method == "simclr" else rows:  # pre-training has no train top-1
        assert {"loss", "train_top1", "val_top1", "test_top1", "test_top5", "seconds"} <= set(row)
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == method
    weights = load_file(str(out / "model.safetensors"))
    assert weights["head.weight"].shape == (num_classes, 512)
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == epochs
    # Both heads are recorded for every method, and the card says which one was saved.
    head = card.head
    assert head["source"] in ("refit", "own") and head["own_head_kind"]
    for kind in ("own_head", "refit_head"):
        assert set(head[kind]) == {"top1", "top5", "loss"}
    assert head["refit"]["iterations"] >= 1 and head["refit"]["rows"] == card.data_splits["train"]
    assert card.metrics["test_top1"] == head[f"{head['source']}_head"]["top1"]
    # The saved model reproduces the card's test accuracy: the files agree with each other.
    model, _ = load_classifier(out)
    assert model.head.weight.shape == (num_classes, 512)
    assert _test_top1(model, card) == pytest.approx(card.metrics["test_top1"], abs=1e-9)
    return card


def _test_top1(model, card: ModelCard) -> float:
    c = card.config
    splits = load_dataset(c["dataset"], c["data_dir"], val_fraction=c["val_fraction"],
                          seed=c["seed"], image_size=c["image_size"], limit=c["limit"])  # fmt: skip
    loader = torch.utils.data.DataLoader(splits.test, batch_size=64)
    return evaluate(model, loader, torch.device("cpu"))["top1"]


def _rows(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_choice_lists_match_the_registries_that_implement_them():
    from abrl_deploy.cli.train import Backbone, Dataset, Method
    from abrl_deploy.training.models import BACKBONES as BUILDERS

    assert set(METHODS) == set(method_names())
    assert set(DATASETS) == set(DATASET_NAMES)
    assert set(BACKBONES) == set(BUILDERS)
    # the CLI's choices are built from those lists, not copied
    assert [m.value for m in Method] == list(METHODS)
    assert [d.value for d in Dataset] == list(DATASETS)
    assert [b.value for b in Backbone] == list(BACKBONES)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_on_digits(tmp_path, method):
    out = tmp_path / method
    extra = ["--limit", "40"]
    if method == "simclr":
        extra = ["--limit", "40", "--epochs", "2", "--pretrain-epochs", "1"]
    result = train(out, "--method", method, *extra)
    assert result.exit_code == 0, result.output
    card = check_run_dir(out, method, 10, epochs=2 if method == "simclr" else 1)
    assert card.head["source"] == "refit"
    rows = _rows(out)
    if method == "simclr":  # pre-training epoch, then fine-tuning: both logged
        assert "nt_xent" in rows[0] and "nt_xent" not in rows[1] and "ce" in rows[1]
    if method == "abrl":  # the default estimator, amortized: SOBA steps, then the refresh
        d = rows[0]["hypergrad_diagnostics"]
        assert rows[0]["amortized_step"] > 0 and card.head["inner_problem"] == "amortized"
        assert d["memory_fill"]["rows"] == d["head_refresh"]["rows"] == card.data_splits["train"]
        assert d["head_refresh"]["residual_over_ridge"] <= card.config["inner_tol"]
        assert "split" in d and card.head["split_diagnostics"] == d["split"]
    assert "test top-1" in result.output and "heads on the final encoder: refit" in result.output


def _diagnostics(out) -> dict:
    return _rows(out)[0]["hypergrad_diagnostics"]


def _check_first_order(out, card):
    d = _diagnostics(out)
    assert "cg_iterations" not in d and d["newton_iterations"]["max"] >= 1


def _check_unrolled(out, card):
    d, row = _diagnostics(out), _rows(out)[0]
    assert "cg_iterations" not in d and "newton_iterations" not in d and row["inner_lr"] > 0


def _check_exact_own_head(out, card):
    d = _diagnostics(out)
    assert d["cg_iterations"]["max"] == 0 and d["cg_residual"]["max"] < 1e-3  # fp32 solve
    assert card.head["source"] == "own"
    assert card.metrics["test_top1"] == card.head["own_head"]["top1"]


def _check_neumann_no_penalty(out, card):
    d = _diagnostics(out)
    assert d["cg_iterations"]["median"] == card.config["cg_max_iter"]  # a series, no stopping
    assert card.config["lambda_"] == 0.0


def _check_paper_inner_loop(out, card):
    d, row = _diagnostics(out), _rows(out)[0]
    assert "newton_iterations" not in d and row["inner_lr"] > 0 and d["cg_iterations"]["max"] >= 1


@pytest.mark.parametrize(
    "variant, check",
    [
        (["--hypergrad", "first-order"], _check_first_order),
        (["--hypergrad", "unrolled", "--inner-solve", "steps", "--inner-steps", "3"],
         _check_unrolled),
        (["--solver", "exact", "--no-head-refit"], _check_exact_own_head),
        (["--solver", "neumann", "--inner-lr", "auto", "--lambda", "0"],
         _check_neumann_no_penalty),
        (["--inner-solve", "steps", "--inner-lr", "auto"], _check_paper_inner_loop),
    ],
)  # fmt: skip
def test_abrl_variants(tmp_path, variant, check):
    """Each variant runs its own path, observable in what its steps record."""
    out = tmp_path / "run"
    result = train(out, "--method", "abrl", "--limit", "30", "--inner-problem", "batch", *variant)
    assert result.exit_code == 0, result.output
    check(out, ModelCard.load(out / "card.json"))


@pytest.mark.parametrize(
    "dataset, writer, classes",
    [
        ("cifar100", datafixtures.write_cifar100, 5),
        ("tiny-imagenet", datafixtures.write_tiny_imagenet, 3),
        ("cub200", datafixtures.write_cub200, 3),
        ("imagefolder", datafixtures.write_imagefolder, 3),
    ],
)
def test_each_layout_trains(tmp_path, dataset, writer, classes):
    data_dir = writer(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--dataset", dataset, "--data-dir", str(data_dir), "--val-fraction", "0.25"]
    result = train(out, *args, "--method", "abrl")
    assert result.exit_code == 0, result.output
    card = check_run_dir(out, "abrl", classes)
    assert card.dataset == dataset


def test_force_removes_our_files_and_the_old_exports_but_not_the_users(tmp_path):
    from abrl_deploy.artifacts import DERIVED_FILES, RUN_FILES
    from abrl_deploy.training.checkpoint import prepare_run_dir

    out = tmp_path / "run"
    out.mkdir()
    for name in (*RUN_FILES, *DERIVED_FILES, "notes.txt"):
        (out / name).write_text("old")
    prepare_run_dir(out, force=True, resume=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert "model.onnx" in DERIVED_FILES and "model.deploy.onnx" in DERIVED_FILES


def test_existing_run_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--method", "finetune", "--limit", "20").exit_code == 0
    before = (out / "model.safetensors").read_bytes()
    again = train(out, "--method", "finetune", "--limit", "20", "--seed", "1")
    assert again.exit_code == 2
    assert "--force" in again.output and "not empty" in again.output
    assert (out / "model.safetensors").read_bytes() == before
    forced = train(out, "--method", "finetune", "--limit", "20", "--seed", "1", "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "model.safetensors").read_bytes() != before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--ridge", "0"], "ridge"),
        (["--dataset", "cifar100"], "--data-dir"),
        (["--dataset", "cifar100", "--data-dir", "/nonexistent/x"], "/nonexistent/x"),
        (["--pretrained", "/nonexistent/w.pt"], "/nonexistent/w.pt"),
        (["--inner-lr", "fast"], "inner_lr"),
        (["--hypergrad", "unrolled"], "--inner-solve steps"),
        (["--grad-clip", "0"], "grad_clip"),
        (["--limit", "12", "--val-fraction", "0.05"], "at least 2 validation images"),
        (["--config", "/nonexistent/c.yaml"], "/nonexistent/c.yaml"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, fragment):
    result = train(tmp_path / "run", *args)
    assert result.exit_code != 0
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error:")


def test_config_file_gives_defaults_and_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: finetune\nlimit: 20\nseed: 3\nlambda: 0.5\n")
    out = tmp_path / "run"
    result = train(out, "--config", str(cfg), "--seed", "4")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["method"], saved["seed"], saved["lambda_"]) == ("finetune", 4, 0.5)
    cfg.write_text("methd: finetune\n")
    bad = train(tmp_path / "other", "--config", str(cfg))
    assert bad.exit_code == 2 and "methd" in bad.output


def test_help_shows_the_defaults_written_in_it():
    """rich would read "[default: 0.01]" as a markup tag and drop it; the help escapes it."""
    from typer.testing import CliRunner

    from abrl_deploy.training.config import TrainConfig

    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).output
    assert "0 disables [default: 0.01]" in out and "no download) [default: digits]" in out
    # the defaults shown are TrainConfig's, not strings written a second time
    assert f"[default: {TrainConfig().inner_problem}]" in out and "[default: off]" in out
