"""One small trained run on digits (~75% top-1, ~15 s), shared by the export and bench tests:
INT8's agreement is only meaningful on a model whose logits are not near-ties."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    from abrl_deploy.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "digits"
    cfg = TrainConfig(method="finetune", epochs=5, batch_size=32, limit=800, image_size=16,
                      lr=0.05, device="cpu")  # fmt: skip
    train(cfg, out, quiet=True)
    return out


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A private copy, so that tests can write artifacts into it."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst
