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
        "from abrl_deploy.export.spec import ExportSpec, FILE_PRECISIONS; "
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


def test_bench_of_an_onnx_file_reads_its_images_without_torch(tmp_path):
    """`abrl bench model.onnx` on a third-party model: images are read and preprocessed without
    torch (issue 14), so it runs with the runtime and bench extras and no torch."""
    pytest.importorskip(
        "onnx", reason="abrl bench reads an ONNX file's inputs with onnx (the bench extra); "
        "this environment has the runtime extra alone"
    )  # fmt: skip
    from card_model import write_cnn
    from datafixtures import write_imagefolder

    model = write_cnn(tmp_path / "model.onnx", width=4, classes=3)
    data = write_imagefolder(tmp_path / "data")
    report = tmp_path / "bench.json"
    args = [str(model), "--dataset", "imagefolder", "--data-dir", str(data), "--mean",
            "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--backend", "ort-cpu", "--batch", "4",
            "--warmup", "1", "--min-iters", "4", "--min-seconds", "0", "--block", "2",
            "--quiet", "--report", str(report)]  # fmt: skip
    code = ("import sys, json; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            "from typer.testing import CliRunner; from abrl_deploy.cli import app; "
            f"r = CliRunner().invoke(app, ['bench', *{args!r}]); "
            "assert r.exit_code == 0, r.output; "
            f"rows = json.load(open({str(report)!r}))['results']; "
            "print(rows[0]['accuracy']['images'])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split()[-1] == "6"  # 3 classes x 2 test images, all read
