"""Every CPU deployment path of one classifier, as ratios to PyTorch eager fp32, in one process.

    .venv/bin/python benchmarks/deploy.py [--run runs/evidence-digits/runs/digits/abrl/seed0]
        [--models resnet18,resnet50] [--rounds 2] [--out benchmarks/results/deploy.json]

Paths: PyTorch eager fp32 and bf16 autocast, ONNX Runtime fp32 and INT8 (the former int8-activation
form and the uint8-activation form `abrl export --precision int8` now writes), OpenVINO at its
default precision, at f32, and on the uint8 INT8 file. ResNet-18 (CIFAR stem, batch 64, 32x32)
and ResNet-50 (batch 8, 224x224), random weights, timed with the bench's interleaved protocol;
with ``--run``, each path's top-1 on that trained run's test split (its own network). Records the
CPU's flags. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from abrl_deploy.bench.environment import environment
from abrl_deploy.bench.protocol import Protocol, Timing, measure_interleaved
from abrl_deploy.export.onnx import trace
from abrl_deploy.export.quantize import ImageCalibrationReader, convert_fp16, quantize_int8
from abrl_deploy.machine import cpu_flags
from abrl_deploy.runtime.backends import make_runner
from abrl_deploy.training.models import build_classifier

SHAPES = {"resnet18": ("cifar", 64, 32, 100), "resnet50": ("imagenet", 8, 224, 100)}


class _Torch:
    """A module as a timed runner (eager, optionally under CPU bf16 autocast)."""

    def __init__(self, model, bf16: bool):
        self.model, self.bf16 = model, bf16

    def run_staged(self, x):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bf16):
            return {"logits": self.model(x).float().numpy()}


def _files(model, tmp: Path, size: int, calib: np.ndarray) -> dict[str, Path]:
    fp32 = tmp / "fp32.onnx"
    trace(model, fp32, "dynamo", size=size, opset=18, outputs=("logits",))
    files = {"fp32": fp32, "fp16": tmp / "fp16.onnx"}
    convert_fp16(fp32, files["fp16"])
    for key, form in (("int8-s8", "cpu-s8"), ("int8-u8", "cpu")):
        files[key] = tmp / f"{key}.onnx"
        batches = [calib[i : i + 16] for i in range(0, len(calib), 16)]
        quantize_int8(fp32, files[key], ImageCalibrationReader(batches, "images"), form=form)
    return files


def _paths(model, files: dict[str, Path]) -> dict[str, object]:
    """label -> an open runner (or the torch adapter)."""
    paths = {"torch eager fp32": _Torch(model, False), "torch bf16 autocast": _Torch(model, True),
             "ort fp32": make_runner("ort-cpu", files["fp32"], spinning=False),
             "ort int8 (int8 activations, former)": make_runner("ort-cpu", files["int8-s8"],
                                                                spinning=False),
             "ort int8 (uint8 activations)": make_runner("ort-cpu", files["int8-u8"],
                                                         spinning=False),
             "ort fp16": make_runner("ort-cpu", files["fp16"], spinning=False),
             "openvino default precision": make_runner("ov-cpu", files["fp32"]),
             "openvino on the fp16 file": make_runner("ov-cpu", files["fp16"]),
             "openvino f32": make_runner("ov-cpu", files["fp32"], ov_precision="f32"),
             "openvino on the uint8 int8 file": make_runner("ov-cpu",
                                                            files["int8-u8"])}  # fmt: skip
    for runner in paths.values():
        if hasattr(runner, "open"):
            runner.open()
    return paths


def _run(runner, label: str, x: np.ndarray) -> np.ndarray:
    if label.startswith("torch"):
        return runner.run_staged(torch.from_numpy(x))["logits"]
    return runner.infer(x)["logits"]


def _describe(runner) -> dict:
    return runner.describe() if hasattr(runner, "describe") else {}


def time_paths(paths: dict, x: np.ndarray, rounds: int, protocol: Protocol) -> dict[str, dict]:
    """Median ms per path: the best of ``rounds`` interleaved measurements (shared machines)."""
    staged = {k: (torch.from_numpy(x) if k.startswith("torch") else r.stage(x))
              for k, r in paths.items()}  # fmt: skip
    best: dict[str, float] = {}
    for _ in range(rounds):
        timings = {k: Timing(load_seconds=0.0, first_call_ms=0.0) for k in paths}
        measure_interleaved(paths, staged, timings, protocol)
        for k, t in timings.items():
            best[k] = min(best.get(k, np.inf), float(np.median(t.samples_ms)))
    eager = best["torch eager fp32"]
    return {k: {"median_ms": v, "speedup_vs_eager": eager / v,
                "runner": _describe(paths[k])} for k, v in best.items()}  # fmt: skip


def accuracy(run: Path, tmp: Path, limit: int) -> dict[str, float]:
    """Top-1 of every path on ``run``'s test split (its own network and preprocessing)."""
    from abrl_deploy.export.images import run_images
    from abrl_deploy.training.checkpoint import load_classifier

    model, card = load_classifier(run)
    images, labels = run_images(card, "test", limit, None)
    calib, _ = run_images(card, "train", 512, None)
    paths = _paths(model, _files(model, tmp, card.input_size, calib))
    out = {}
    for label, runner in paths.items():
        logits = np.concatenate([_run(runner, label, images[i : i + 64])
                                 for i in range(0, len(images), 64)])  # fmt: skip
        out[label] = float((logits.argmax(1) == labels).mean() * 100)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50")
    p.add_argument("--run", type=Path, help="a trained run for accuracy (e.g. digits abrl)")
    p.add_argument("--limit", type=int, default=360)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/deploy.json"))
    args = p.parse_args()
    protocol = Protocol(warmup=3, min_iters=15, min_seconds=args.min_seconds, block=1, min_blocks=3)
    result = {"command": "python benchmarks/deploy.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
              "cpu_flags": cpu_flags(), "environment": environment(),
              "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
              "models": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            stem, batch, size, classes = SHAPES[name]
            torch.manual_seed(0)
            model = build_classifier(name, classes, stem=stem).eval()
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size), np.float32)
            calib = np.random.default_rng(1).standard_normal((32, 3, size, size), np.float32)
            folder = Path(tmp) / name
            folder.mkdir()
            paths = _paths(model, _files(model, folder, size, calib))
            rows = time_paths(paths, x, args.rounds, protocol)
            result["models"][name] = {"batch": batch, "size": size, "paths": rows}
            print(f"\n{name}, batch {batch}, {size}x{size} ({', '.join(result['cpu_flags'])})")
            for label, r in rows.items():
                print(f"  {label:36s} {r['median_ms']:9.1f} ms  {r['speedup_vs_eager']:5.2f}x")
        if args.run:
            folder = Path(tmp) / "run"
            folder.mkdir()
            result["accuracy"] = {"run": str(args.run), "top1": accuracy(args.run, folder,
                                                                         args.limit)}  # fmt: skip
            print(f"\ntop-1 on {args.run}'s test split:")
            for label, top1 in result["accuracy"]["top1"].items():
                print(f"  {label:36s} {top1:6.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
