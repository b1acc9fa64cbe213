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
from abrl_deploy.cli.train import DATASETS, METHODS
from abrl_deploy.training.checkpoint import RUN_FILES, load_classifier
from abrl_deploy.training.data import DATASET_NAMES
from abrl_deploy.training.methods import method_names

FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--quiet", "--device", "cpu"]
runner = CliRunner()


def train(out, *args: str):
    return runner.invoke(app, ["train", "--out", str(out), *FAST, *args])


def check_run_dir(out, method: str, num_classes: int) -> ModelCard:
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    card = ModelCard.load(out / "card.json")
    assert card.method == method and card.num_classes == num_classes
    assert card.input_size == 16 and card.preprocessing["eval"]["crop"] == 16
    assert set(card.data_splits) == {"train", "val", "test"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert {"loss", "train_top1", "val_top1", "test_top1", "test_top5", "seconds"} <= set(rows[0])
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == method
    weights = load_file(str(out / "model.safetensors"))
    assert weights["head.weight"].shape == (num_classes, 512)
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 1
    # The saved model reproduces the card's test accuracy: the files agree with each other.
    model, _ = load_classifier(out)
    assert 0.0 <= card.metrics["test_top1"] <= 100.0
    assert model.head.weight.shape == (num_classes, 512)
    return card


def test_cli_names_match_registries():
    assert set(METHODS) == set(method_names())
    assert set(DATASETS) == set(DATASET_NAMES)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_on_digits(tmp_path, method):
    out = tmp_path / method
    extra = ["--limit", "40"]
    if method == "simclr":
        extra = ["--limit", "40", "--epochs", "2", "--pretrain-epochs", "1"]
    result = train(out, "--method", method, *extra)
    assert result.exit_code == 0, result.output
    card = check_run_dir(out, method, 10) if method != "simclr" else None
    if method == "abrl":
        assert card.head["source"] == "refit"
        assert "top1" in card.head["inner_loop_head"]
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["inner_residual"] > 0 and rows[0]["cg_iterations"] >= 1
    assert "test top-1" in result.output


@pytest.mark.parametrize(
    "variant",
    [
        ["--hypergrad", "first-order"],
        ["--hypergrad", "unrolled", "--inner-steps", "3"],
        ["--solver", "exact", "--no-head-refit"],
        ["--solver", "neumann", "--inner-lr", "auto", "--lambda", "0"],
    ],
)
def test_abrl_variants(tmp_path, variant):
    result = train(tmp_path / "run", "--method", "abrl", "--limit", "30", *variant)
    assert result.exit_code == 0, result.output


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
