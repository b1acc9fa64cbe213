"""Training-step costs: seconds per step of ABRL variants (interleaved), and the bytes autograd
saves for backward with the implicit vs the unrolled hypergradient at several K.

Shared by ``benchmarks/train_step.py`` and ``abrl reproduce`` (claims 3 and 4). Steps run on
fixed random batches: the cost of a step does not depend on what the images show.
"""

from __future__ import annotations

# Torch is imported inside the functions: abrl reproduce reads StepShape without loading it.
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepShape:
    """The model and batches one step is timed on."""

    backbone: str = "resnet18"
    batch: int = 64
    val_batch: int = 16
    size: int = 32
    classes: int = 10
    stem: str = "cifar"
    device: str = "cpu"


def images(shape: StepShape, n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, shape.size, shape.size, generator=g)
    y = torch.randint(0, shape.classes, (n,), generator=g)
    return x.to(shape.device), y.to(shape.device)


def stepper(name: str, shape: StepShape, **cfg: Any):
    """A function doing one optimizer step of method ``name`` on fixed batches.

    Fine-tuning gets the same images ABRL sees: its train and validation rows together.
    """
    import torch

    from .config import TrainConfig
    from .methods import get_method
    from .models import build_classifier

    torch.manual_seed(0)
    device = torch.device(shape.device)
    model = build_classifier(shape.backbone, shape.classes, stem=shape.stem).to(device)
    config = TrainConfig(method=name, batch_size=shape.batch, val_batch_size=shape.val_batch,
                         backbone=shape.backbone, **cfg)  # fmt: skip
    method = get_method(name)(config, model, None, device)
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    tr, val = images(shape, shape.batch, 0), images(shape, shape.val_batch, 1)
    if not method.needs_val_batch:
        tr, val = (torch.cat([tr[0], val[0]]), torch.cat([tr[1], val[1]])), None

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        method.step(tr, val)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def time_method(name: str, shape: StepShape, steps: int, warmup: int, **cfg: Any) -> list[float]:
    """Per-step seconds of one method, after ``warmup`` untimed steps."""
    step = stepper(name, shape, **cfg)
    for _ in range(warmup):
        step()
    return [step() for _ in range(steps)]


def saved_bytes(fn) -> int:
    """Bytes autograd saves for backward while ``fn`` builds its graph."""
    import torch

    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.backward()
    return total


def memory_in_k(shape: StepShape, inner_steps: int) -> dict[str, float]:
    """Saved-for-backward MiB of one hypergradient. Implicit: one encoder forward whatever K.
    Unrolled with fresh inner batches: K + 1 forwards. Batches of ``shape.val_batch`` rows."""
    import torch
    import torch.nn.functional as F

    from .methods import hypergrad as hg
    from .models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(shape.backbone, shape.classes, stem=shape.stem).to(shape.device)
    enc = model.encoder
    W = torch.zeros(shape.classes, model.feature_dim, device=shape.device)
    b = torch.zeros(shape.classes, device=shape.device)
    k = inner_steps  # K, the paper's symbol, in the formulas below
    batches = [images(shape, shape.val_batch, s) for s in range(k + 1)]

    def implicit():
        (x, y), (xv, yv) = batches[0], batches[1]
        z = enc(torch.cat([x, xv]))
        zt, zv = z[: len(x)], z[len(x) :]
        W1, b1 = hg.inner_steps(zt.detach(), y, W, b, 1e-3, 0.1, k)
        probs = torch.softmax(hg.head_logits(zt.detach(), W1, b1), 1)
        sol = hg.solve_cg(zt.detach(), probs, hg.ce_grad(zv.detach(), yv, W1, b1), 1e-3)
        return hg.implicit_surrogate(zt, y, zv, yv, W1, b1, sol.v)

    def unrolled():
        zs = [enc(x) for x, _ in batches[:k]]
        W1, b1 = hg.unrolled_head(zs, [y for _, y in batches[:k]], W, b, 1e-3, 0.1)
        xv, yv = batches[k]
        return F.cross_entropy(hg.head_logits(enc(xv), W1, b1), yv)

    mib = 2**20
    return {
        "k": k,
        "implicit_mib": saved_bytes(implicit) / mib,
        "unrolled_mib": saved_bytes(unrolled) / mib,
    }
