"""--tensorboard writes the scalars of metrics.jsonl, one run per folder, never over another run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from abrl_deploy.cli import app
from abrl_deploy.training.tensorboard import scalars

pytest.importorskip("tensorboard", reason="pip install 'abrl[tensorboard]'")


def train(out, tb, *extra):
    args = ["train", "--method", "abrl", "--epochs", "2", "--limit", "120", "--image-size", "8",
            "--device", "cpu", "--out", str(out), "--tensorboard", str(tb), "--quiet",
            *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_events_hold_the_same_numbers_as_metrics_jsonl(tmp_path):
    result = train(tmp_path / "run", tmp_path / "tb")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    events = read_events(tmp_path / "tb" / "run")
    for tag in ("val/top1", "test/top1", "train/loss", "train/lr", "train/images_per_second",
                "train/penalty", "train/inner_residual_over_ridge"):  # fmt: skip
        assert tag in events, sorted(events)
    for tag, points in events.items():
        assert [step for step, _ in points] == [r["epoch"] for r in rows]
        expected = [scalars(r)[tag] for r in rows]
        assert [v for _, v in points] == pytest.approx(expected, rel=1e-6), tag


def test_another_run_of_the_same_name_needs_force(tmp_path):
    assert train(tmp_path / "run", tmp_path / "tb").exit_code == 0
    again = train(tmp_path / "other" / "run", tmp_path / "tb")
    assert again.exit_code != 0 and "already holds another run's events" in again.output
    assert train(tmp_path / "other" / "run", tmp_path / "tb", "--force").exit_code == 0
