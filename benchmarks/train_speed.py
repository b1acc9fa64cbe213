"""Training throughput: fp32 vs --precision auto, with and without the decoded-image cache, for
fine-tune and ABRL on real images (tiny-imagenet-100 at 32 px by default).

Every variant is a real Trainer (its DataLoader, transforms, method step and optimizer); the
variants take turns, a few steps each, round after round, so that load on a shared machine hits
all of them alike. A step's time includes fetching its batch (decoding or reading the cache). The
epoch time is steps per epoch × the median over rounds of the mean step time.

    .venv/bin/python benchmarks/train_speed.py --data-dir DATA/tiny-imagenet-100 \
        [--rounds 4] [--steps 5] [--out benchmarks/results/train_speed.json]

Prints a table and writes JSON with the CPU and its flags. Timing is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from abrl_deploy import machine
from abrl_deploy.training.config import load_config
from abrl_deploy.training.trainer import Trainer

VARIANTS = {  # name: (precision, cache, channels_last; None = auto: with bf16 only)
    "fp32, decode every epoch": ("fp32", False, None),
    "fp32, cache": ("fp32", True, None),
    "auto, decode every epoch": ("auto", False, None),
    "auto, cache": ("auto", True, None),
    "auto, cache, contiguous": ("auto", True, False),
    "fp32, cache, channels_last": ("fp32", True, True),
}
DEFAULT_VARIANTS = ",".join(list(VARIANTS)[:4])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="tiny-imagenet")
    p.add_argument("--data-dir", required=True, help="tiny-imagenet-100 in its official layout")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--methods", default="finetune,abrl")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"of: {'; '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    args = p.parse_args()
    cache_dir = tempfile.mkdtemp(prefix="abrl-speed-cache-")
    trainers, streams = {}, {}
    for method in args.methods.split(","):
        for name in args.variants.split(","):
            precision, cached, channels_last = VARIANTS[name]
            cfg = load_config(
                "configs/cpu-small.yaml", method=method, dataset=args.dataset,
                data_dir=args.data_dir, image_size=args.image_size, precision=precision,
                data_cache=cache_dir if cached else "off", workers=args.workers, device="cpu",
                channels_last=channels_last,
            )  # fmt: skip
            key = f"{method}: {name}"
            with tempfile.TemporaryDirectory() as out:
                trainers[key] = Trainer(cfg, Path(out), quiet=True)
            streams[key] = _endless(trainers[key])
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for key in trainers:  # one untimed step each: allocations, oneDNN kernel selection
        _timed_step(trainers[key], streams[key])
    for r in range(args.rounds):
        for key, trainer in trainers.items():
            per_step = [_timed_step(trainer, streams[key]) for _ in range(args.steps)]
            times[key].append(statistics.fmean(per_step))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    report = _report(args, trainers, times)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


def _endless(trainer: Trainer):
    while True:
        yield from trainer.epoch_batches()
        trainer.epoch += 1


def _timed_step(trainer: Trainer, stream) -> float:
    t0 = time.perf_counter()
    batch, val = next(stream)
    trainer.train_step(batch, val)
    return time.perf_counter() - t0


def _report(args, trainers, times) -> dict:
    rows = []
    for key, trainer in trainers.items():
        method, name = key.split(": ")
        step = statistics.median(times[key])
        base = statistics.median(times[f"{method}: {args.variants.split(',')[0]}"])
        rows.append({
            "method": method, "variant": name, "precision": trainer.precision.dtype,
            "channels_last": trainer.precision.channels_last,
            "step_ms": round(1000 * step, 1),
            "round_step_ms": [round(1000 * t, 1) for t in times[key]],
            "epoch_seconds": round(trainer.steps_per_epoch * step, 1),
            "speedup_vs_first_variant": round(base / step, 2),
        })  # fmt: skip
    print(f"{'method':9} {'variant':26} {'ran':5} {'step ms':>8} {'epoch s':>8} {'speed-up':>8}")
    for r in rows:
        ran = r["precision"]
        print(f"{r['method']:9} {r['variant']:26} {ran:5} {r['step_ms']:8.1f} "
              f"{r['epoch_seconds']:8.1f} {r['speedup_vs_first_variant']:7.2f}x")  # fmt: skip
    first = next(iter(trainers.values()))
    return {
        "cpu": machine.cpu_model(),
        "cpu_flags": machine.cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dataset": f"{args.dataset} ({args.data_dir}) at {args.image_size} px",
        "steps_per_epoch": first.steps_per_epoch,
        "protocol": f"{args.rounds} interleaved rounds x {args.steps} steps per variant, one "
        "untimed step first; step time includes fetching the batch; configs/cpu-small.yaml",
        "baseline_variant": args.variants.split(",")[0],
        "rows": rows,
    }


if __name__ == "__main__":
    main()
