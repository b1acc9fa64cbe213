"""The executors without a cluster: options, a failing cell, --quiet lines, the storage probe.

The Ray executor on a real cluster is tested in test_ray_executor.py.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from abrl_deploy.cli import app
from abrl_deploy.errors import ConfigError, DependencyError, TrainingError
from abrl_deploy.reproduce import ReproduceSpec
from abrl_deploy.reproduce.executors import _probe, run_cells
from abrl_deploy.reproduce.plan import plan_grid

# config_dir: the tiny preset of tests/reproduce/conftest.py


def _fake_train(cfg, run_dir, *, force=False, resume=False, quiet=False):
    """What train() leaves in a run folder, in milliseconds; ABRL-without-penalty diverges."""
    if cfg.method == "abrl" and cfg.lambda_ == 0:
        raise TrainingError("ABRL diverged at step 3 (loss nan); lower --lr or add --grad-clip")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    (run_dir / "model.safetensors").write_bytes(b"weights")
    row = {"epoch": 1, "loss": 1.0, "test_top1": 50.0, "val_top1": 50.0}
    (run_dir / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    head = {"source": "own", "own_head": {"top1": 50.0}, "refit_head": {"top1": 60.0}}
    card = {"metrics": {"test_top1": 50.0}, "input_size": 8, "head": head}
    (run_dir / "card.json").write_text(json.dumps(card))


def test_spec_rejects_unknown_executor_and_bad_counts():
    with pytest.raises(ConfigError) as e:
        ReproduceSpec(executor="slurm", cpus_per_run=0)
    assert "--executor 'slurm'; valid: local, ray" in str(e.value)
    assert "--cpus-per-run" in str(e.value)


def test_ray_executor_without_ray_names_the_extra(tmp_path, config_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    spec = ReproduceSpec(seeds=(0,), out=tmp_path / "o", config_dir=config_dir, executor="ray")
    with pytest.raises(DependencyError, match=r"pip install 'abrl\[cluster\]'"):
        run_cells(plan_grid(spec), spec, None)


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path, config_dir, monkeypatch):
    """Local executor: a cell's own AbrlError is one line in report["failed"]; the tables come
    from the other cells; --quiet prints one line per cell; the exit status is 1."""
    import abrl_deploy.training as training

    monkeypatch.setattr(training, "train", _fake_train)
    out = tmp_path / "o"
    args = ["reproduce", "--seeds", "0", "--out", str(out), "--config-dir", str(config_dir),
            "--no-latency", "--no-costs", "--quiet"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    report = json.loads((out / "reproduce.json").read_text())
    name = "digits/abrl-no-penalty/seed0"
    assert report["failed"] == {name: "TrainingError: ABRL diverged at step 3 (loss nan); "
                                "lower --lr or add --grad-clip"}  # fmt: skip
    assert report["missing"] == [name] and len(report["runs"]) == 8
    assert "Traceback" not in r.output and f"failed: {name}: TrainingError" in r.output
    assert r.output.count("/9] digits/") == 9  # --quiet: one line per cell that ended here


def test_quiet_lines_are_the_cells_that_ended_here():
    from abrl_deploy.cli.progress import cell_lines

    buf = io.StringIO()
    progress = cell_lines(Console(file=buf, width=200))
    for message, done in [
        ("a: running", 0),
        ("a: reused", 1),
        ("b: running on n1, pid 2", 1),
        ("b: retried (attempt 2) on n2, pid 3", 1),
        ("b: resumed on n2", 2),
        ("c: failed: TrainingError: x", 3),
        ("measuring the claims", 3),
    ]:
        progress(message, done, 3)  # fmt: skip
    assert buf.getvalue().splitlines() == ["[2/3] b: resumed on n2",
                                           "[3/3] c: failed: TrainingError: x"]  # fmt: skip


def test_the_storage_probe_names_what_a_node_cannot_see(tmp_path):
    grid = tmp_path / ".abrl-grid-1234"
    assert _probe(str(grid), "n1").startswith("FileNotFoundError: ")
    grid.mkdir()
    (grid / "token").write_text("another")
    assert "holds another grid's token" in _probe(str(grid), "n1")
    (grid / "token").write_text(grid.name)
    assert _probe(str(grid), "n1") is None and (grid / "node-n1").read_text() == "n1"
