"""Cost of an ABRL step: seconds per step against fine-tuning on the same images, the penalty's
overhead, and the memory of the implicit vs the unrolled hypergradient for K = 1, 5, 20.

    .venv/bin/python benchmarks/train_step.py [--backbone resnet18] [--steps 10] [--out FILE]

Prints a table and writes JSON. Timing is a benchmark, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from abrl_deploy.machine import signature
from abrl_deploy.training.costs import StepShape, memory_in_k, time_method


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--val-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=10, help="100 for tiny-imagenet-100")
    p.add_argument("--ks", default="1,5,20")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = p.parse_args()
    shape = StepShape(args.backbone, args.batch, args.val_batch, args.size, args.classes)
    # memory is not here: it needs a dataset (its step solves on every row), these are fixed
    # synthetic batches; its cost shows in the runs' epoch seconds (README).
    variants = {
        "finetune": ("finetune", {}),
        "abrl": ("abrl", {"lambda_": 0.01}),  # the default: amortized inner problem
        "abrl_batch": ("abrl", {"lambda_": 0.01, "inner_problem": "batch"}),  # Newton + CG
        "abrl_k_steps": (
            "abrl",
            {"lambda_": 0.01, "inner_problem": "batch", "inner_solve": "steps", "inner_lr": "auto"},
        ),  # fmt: skip
        "abrl_lambda0": ("abrl", {"lambda_": 0.0}),
    }
    # Interleave the variants round by round so that drift on a busy machine hits all of them.
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):
        for key, (name, cfg) in variants.items():
            times[key] += time_method(name, shape, args.steps, args.warmup, **cfg)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            **signature(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
        "median_step_seconds": med,
        "steps_measured": {k: len(v) for k, v in times.items()},
        "abrl_over_finetune": med["abrl"] / med["finetune"],
        "abrl_batch_over_finetune": med["abrl_batch"] / med["finetune"],
        "abrl_k_steps_over_finetune": med["abrl_k_steps"] / med["finetune"],
        "penalty_overhead": med["abrl"] / med["abrl_lambda0"] - 1,
        "memory_saved_for_backward": [memory_in_k(shape, int(k)) for k in args.ks.split(",")],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"{args.backbone}, {args.batch}+{args.val_batch} images of {args.size}px, "
          f"{args.classes} classes, {m['cpu']} ({' '.join(m['cpu_flags'])})")  # fmt: skip
    for k, v in med.items():
        print(f"  {k:14s} median {v:.3f} s/step over {len(times[k])} steps")
    print(f"  ABRL / fine-tune: {result['abrl_over_finetune']:.3f} (target <= 1.25)")
    print(f"  penalty overhead: {100 * result['penalty_overhead']:+.1f}% (paper: ~3%)")
    for row in result["memory_saved_for_backward"]:
        print(
            f"  K={row['k']:3d}: implicit {row['implicit_mib']:.1f} MiB, "
            f"unrolled {row['unrolled_mib']:.1f} MiB"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
