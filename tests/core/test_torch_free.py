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
    ],
)
def test_no_torch_imported(code):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(code=code)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False"] * len(HEAVY), out.stdout + out.stderr
