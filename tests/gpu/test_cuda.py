"""What only a CUDA device can show: bf16 training there, the same logits on GPU and CPU, the
torch-cuda bench backend, and ABRL's hypergradient maths on the device. Skipped without CUDA
(conftest); run by benchmarks/gpu_check.sh on a machine with an NVIDIA GPU."""

from __future__ import annotations

import json

import pytest
import torch

from abrl_deploy.training import TrainConfig, train
from abrl_deploy.training.checkpoint import load_classifier
from abrl_deploy.training.methods import hypergrad as hg

pytestmark = pytest.mark.gpu
DEVICE = "cuda"


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "digits"
    cfg = TrainConfig(method="abrl", epochs=3, batch_size=64, limit=600, image_size=32,
                      augment=False, device=DEVICE, data_cache="off")  # fmt: skip
    return train(cfg, out, quiet=True)


def test_auto_trains_in_bf16_on_cuda_and_the_card_says_so(cuda_run):
    ran = cuda_run.card.training
    assert ran["device"].startswith("cuda") and ran["gpu"]
    assert ran["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    rows = [json.loads(line) for line in (cuda_run.run_dir / "metrics.jsonl").open()]
    assert all(r["cuda_peak_memory_mb"] > 0 for r in rows)
    assert cuda_run.card.metrics["test_top1"] > 50  # 10 classes: chance is 10%


def test_a_model_trained_on_cuda_gives_the_same_logits_on_the_cpu(cuda_run):
    """fp32 on the GPU equals the CPU once TF32 is off. With PyTorch's default (cuDNN convolutions
    in TF32) the first run of this check differed by 2.8e-3 absolute, 5% relative, on an H200."""
    model, card = load_classifier(cuda_run.run_dir)
    size = card.input_size
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu = model(x)
            gpu = model.cuda()(x.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_implicit_hypergradient_pieces_agree_on_cuda_and_cpu():
    g = torch.Generator().manual_seed(0)
    z, zv = torch.randn(64, 32, generator=g).double(), torch.randn(16, 32, generator=g).double()
    y, yv = torch.arange(64) % 10, torch.arange(16) % 10
    W, b = torch.zeros(10, 32).double(), torch.zeros(10).double()

    def solve(device):
        Wd, bd = hg.inner_steps(
            z.to(device), y.to(device), W.to(device), b.to(device), 1e-3, 0.5, 20
        )
        probs = torch.softmax(hg.head_logits(z.to(device), Wd, bd), 1)
        grad = hg.ce_grad(zv.to(device), yv.to(device), Wd, bd)
        sol = hg.solve_exact(z.to(device), probs, grad, 1e-3)
        return [t.cpu() for t in (Wd, bd, *sol.v)]

    for a, c in zip(solve("cuda"), solve("cpu"), strict=True):
        torch.testing.assert_close(a, c, rtol=1e-8, atol=1e-10)


def test_torch_cuda_backend_benches_a_run_and_agrees_with_the_cpu(cuda_run, tmp_path):
    from typer.testing import CliRunner

    from abrl_deploy.cli import app

    report = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", str(cuda_run.run_dir), "--backend", "torch,torch-cuda", "--batch", "16",
        "--warmup", "2", "--min-iters", "5", "--min-seconds", "0.2", "--quiet",
        "--report", str(report),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["results"]
    by_backend = {r["backend"]: r for r in rows}
    assert {"torch", "torch-cuda"} <= set(by_backend)
    top1 = {k: r["accuracy"]["top1"] for k, r in by_backend.items()}
    assert abs(top1["torch"] - top1["torch-cuda"]) <= 1.0, top1
