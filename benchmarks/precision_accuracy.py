"""Does bf16 training cost accuracy? The same runs in fp32 and in --precision auto, per method and
seed, with both heads (refit and own) on the test split, and the fp32 − auto difference per seed.

    .venv/bin/python benchmarks/precision_accuracy.py [--config configs/cpu-small.yaml] \
        [--methods finetune,abrl] [--seeds 0,1] [--out benchmarks/results/precision_accuracy.json]

Extra `key=value` pairs after `--set` override the config (e.g. `--set dataset=tiny-imagenet`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from abrl_deploy import machine
from abrl_deploy.training import load_config, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/cpu-small.yaml")
    p.add_argument("--methods", default="finetune,abrl")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/precision_accuracy.json"))
    args = p.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for precision in ("fp32", "auto"):
                cfg = load_config(args.config, method=method, seed=seed, precision=precision,
                                  **overrides)  # fmt: skip
                with tempfile.TemporaryDirectory() as out:
                    card = train(cfg, Path(out) / "run", quiet=True).card
                rows.append({
                    "method": method, "seed": seed, "precision": card.training["precision"],
                    "refit_top1": card.head["refit_head"]["top1"],
                    "own_top1": card.head["own_head"]["top1"],
                    "train_seconds": card.metrics["train_seconds"],
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    report = {"cpu": machine.cpu_model(), "cpu_flags": machine.cpu_flags(),
              "config": args.config, "overrides": overrides, "rows": rows,
              "differences": _differences(rows)}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["differences"], indent=1))


def _differences(rows):
    """Per method and head: fp32 − auto per seed, their mean, and the seed spread within fp32."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for head in ("refit_top1", "own_top1"):
            by = {(r["seed"], r["precision"]): r[head] for r in rows if r["method"] == method}
            seeds = sorted({s for s, _ in by})
            low = [p for _, p in by if p != "fp32"]
            if not low:
                continue
            diffs = [by[(s, "fp32")] - by[(s, low[0])] for s in seeds]
            fp32 = [by[(s, "fp32")] for s in seeds]
            out[f"{method} {head}"] = {
                "fp32_minus_auto_per_seed": [round(d, 2) for d in diffs],
                "mean_difference": round(statistics.fmean(diffs), 2),
                "fp32_seed_range": round(max(fp32) - min(fp32), 2),
            }
    return out


if __name__ == "__main__":
    main()
