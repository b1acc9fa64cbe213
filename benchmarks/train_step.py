"""Cost of an ABRL step: seconds per step against fine-tuning on the same images, the penalty's
overhead, and the memory of the implicit vs the unrolled hypergradient for K = 1, 5, 20.

    .venv/bin/python benchmarks/train_step.py [--backbone resnet18] [--steps 10] [--out FILE]

Prints a table and writes JSON. Timing is a benchmark, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from abrl_deploy.training.config import TrainConfig
from abrl_deploy.training.methods import get_method
from abrl_deploy.training.methods import hypergrad as hg
from abrl_deploy.training.models import build_classifier

C = 10


def images(n: int, size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, C, (n,), generator=g)


def time_method(name: str, args, **cfg) -> list[float]:
    """Median-ready per-step seconds of one method on fixed batches (forward, backward, SGD)."""
    torch.manual_seed(0)
    model = build_classifier(args.backbone, C, stem="cifar")
    config = TrainConfig(method=name, batch_size=args.batch, val_batch_size=args.val_batch, **cfg)
    method = get_method(name)(config, model, None, torch.device("cpu"))
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    tr, val = images(args.batch, args.size, 0), images(args.val_batch, args.size, 1)
    if name != "abrl":  # fine-tune on the same images ABRL sees: train and validation rows
        tr, val = (torch.cat([tr[0], val[0]]), torch.cat([tr[1], val[1]])), None
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        method.step(tr, val)
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return times


def saved_bytes(fn) -> int:
    """Bytes autograd saves for backward while ``fn`` builds its graph."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.backward()
    return total


def memory_in_k(args, k: int) -> dict[str, float]:
    """Implicit: one forward whatever K. Unrolled with fresh inner batches: K + 1 forwards."""
    torch.manual_seed(0)
    model = build_classifier(args.backbone, C, stem="cifar")
    enc = model.encoder
    W, b = torch.zeros(C, model.feature_dim), torch.zeros(C)
    batches = [images(args.val_batch, args.size, s) for s in range(k + 1)]

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--val-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--ks", default="1,5,20")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = p.parse_args()
    variants = {
        "finetune": ("finetune", {}),
        "abrl": ("abrl", {"lambda_": 0.01}),
        "abrl_lambda0": ("abrl", {"lambda_": 0.0}),
    }
    # Interleave the variants round by round so that drift on a busy machine hits all of them.
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):
        for key, (name, cfg) in variants.items():
            times[key] += time_method(name, args, **cfg)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
        "median_step_seconds": med,
        "steps_measured": {k: len(v) for k, v in times.items()},
        "abrl_over_finetune": med["abrl"] / med["finetune"],
        "penalty_overhead": med["abrl"] / med["abrl_lambda0"] - 1,
        "memory_saved_for_backward": [memory_in_k(args, int(k)) for k in args.ks.split(",")],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{args.backbone}, {args.batch}+{args.val_batch} images of {args.size}px, CPU")
    for k, v in med.items():
        print(f"  {k:14s} median {v:.3f} s/step over {len(times[k])} steps")
    print(f"  ABRL / fine-tune: {result['abrl_over_finetune']:.3f} (target <= 1.15)")
    print(f"  penalty overhead: {100 * result['penalty_overhead']:+.1f}% (paper: ~3%)")
    for row in result["memory_saved_for_backward"]:
        print(
            f"  K={row['k']:3d}: implicit {row['implicit_mib']:.1f} MiB, "
            f"unrolled {row['unrolled_mib']:.1f} MiB"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
