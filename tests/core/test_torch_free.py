"""`import abrl_deploy` and `abrl --help` must not import torch (production services lack it)."""

import subprocess
import sys

import pytest

CHECK = "import sys; {code}; print('torch' in sys.modules, 'torchvision' in sys.modules)"


@pytest.mark.parametrize(
    "code",
    [
        "import abrl_deploy, abrl_deploy.card, abrl_deploy.errors",
        "import abrl_deploy.bench, abrl_deploy.bench.report, abrl_deploy.runtime.backends; "
        "from abrl_deploy.runtime import TrtRunner",
        "from typer.testing import CliRunner; from abrl_deploy.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['bench', '--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_imported(code):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(code=code)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
