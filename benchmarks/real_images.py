"""Methods compared on real images: `abrl train` runs on Tiny-ImageNet (100 classes, 32 px),
every method with the same preset, splits, epochs, augmentation and optimizer; both heads.

    .venv/bin/python benchmarks/real_images.py --data-dir DATA/tiny-imagenet-100 \\
        [--methods finetune,abrl,abrl-first-order] [--seeds 0,1] [--epochs 1] [--out runs/real]

Resumable: a finished run directory (card.json present) is reused. Prints a table and writes
benchmarks/results/real_images.json. A benchmark, not a test: it trains for many minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "finetune": ["--method", "finetune"],
    "abrl": ["--method", "abrl"],  # the default inner problem (amortized since issue 23)
    "abrl-batch": ["--method", "abrl", "--inner-problem", "batch"],
    "abrl-memory": ["--method", "abrl", "--inner-problem", "memory"],
    "abrl-first-order": ["--method", "abrl", "--hypergrad", "first-order"],
    "abrl-k-steps": ["--method", "abrl", "--inner-solve", "steps", "--inner-problem", "batch"],
    "joint": ["--method", "joint"],
}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="tiny-imagenet")
    p.add_argument("--methods", default="finetune,abrl,abrl-first-order")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--config", default="configs/cpu-small.yaml")
    p.add_argument("--out", type=Path, default=Path("runs/real"))
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/real_images.json"))
    args = p.parse_args()
    abrl = [sys.executable, "-m", "abrl_deploy.cli"]
    runs = []
    for seed in args.seeds.split(","):
        for name in args.methods.split(","):
            run = args.out / args.dataset / name / f"seed{seed}"
            if not (run / "card.json").is_file():
                cmd = [*abrl, "train", "--config", args.config, "--dataset", args.dataset,
                       "--data-dir", args.data_dir, "--image-size", "32", "--epochs",
                       str(args.epochs), "--seed", seed, "--out", str(run), "--force",
                       "--quiet", *VARIANTS[name]]  # fmt: skip
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
            card = json.loads((run / "card.json").read_text())
            h = card["head"]
            runs.append({"variant": name, "seed": int(seed), "dir": str(run),
                         "refit_top1": h["refit_head"]["top1"], "own_top1": h["own_head"]["top1"],
                         "train_seconds": card["metrics"]["train_seconds"],
                         "splits": card["data_splits"]})  # fmt: skip
    summary = {}
    for name in args.methods.split(","):
        rows = [r for r in runs if r["variant"] == name]
        summary[name] = {h: statistics.mean(r[f"{h}_top1"] for r in rows) for h in ("refit", "own")}
    result = {"command": " ".join(sys.argv), "epochs": args.epochs, "config": args.config,
              "cpu": _cpu(), "threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs,
              "mean_top1": summary}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.dataset}, {args.epochs} epoch(s), seeds {args.seeds}; test top-1 (%)")
    print(f"{'variant':20s} {'refit head':>10s} {'own head':>10s}")
    for name, s in summary.items():
        print(f"{name:20s} {s['refit']:10.2f} {s['own']:10.2f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
