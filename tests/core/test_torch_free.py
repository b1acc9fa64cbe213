"""`import abrl_deploy` and `abrl --help` must not import torch (production services lack it),
nor FastAPI (the optional extra of `abrl serve`)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "fastapi")
CHECK = "import sys; {code}; print(*(m in sys.modules for m in " + repr(HEAVY) + "))"


@pytest.mark.parametrize(
    "code",
    [
        "import abrl_deploy, abrl_deploy.card, abrl_deploy.errors",
        "import abrl_deploy.bench, abrl_deploy.bench.report, abrl_deploy.runtime.backends; "
        "from abrl_deploy.runtime import TrtRunner",
        "from typer.testing import CliRunner; from abrl_deploy.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['bench', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['predict', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['reproduce', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['serve', '--help']); assert r.exit_code == 0, r.output",
        "import abrl_deploy.serve, abrl_deploy.serve.inputs, abrl_deploy.predictor",
        # the lazy packages: their choice lists and specs without torch
        "import abrl_deploy.training, abrl_deploy.export, abrl_deploy.optimize; "
        "from abrl_deploy.training.config import METHODS, DATASETS, TrainConfig; "
        "from abrl_deploy.export.spec import ExportSpec, PRECISIONS; "
        "from abrl_deploy.optimize import OptimizeSpec",
        "from typer.testing import CliRunner; from abrl_deploy.cli import app; "
        "r = CliRunner().invoke(app, ['export', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['optimize', '--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_imported(code):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(code=code)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False"] * len(HEAVY), out.stdout + out.stderr
