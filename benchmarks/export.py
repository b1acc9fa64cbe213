"""Export cost and ONNX Runtime CPU latency of FP32, FP16 and INT8 files (ResNet-18 and -50).

    .venv/bin/python benchmarks/export.py [--backbones resnet18,resnet50] [--batch 64] [--out FILE]

Random weights (timing only). Prints a table and writes JSON; never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from abrl_deploy.bench.protocol import Protocol, Timing, first_call, measure_interleaved
from abrl_deploy.export.onnx import trace
from abrl_deploy.export.quantize import ImageCalibrationReader, convert_fp16, quantize_int8
from abrl_deploy.runtime import OrtRunner
from abrl_deploy.training.models import build_classifier


def latency(path: Path, x: np.ndarray, warmup: int, iters: int, min_seconds: float) -> dict:
    """Median and p90 of one call, by the bench's own protocol (one model, blocks of one call)."""
    with OrtRunner(path, "ort-cpu") as runner:
        staged, _ = first_call(runner, x)
        timing = Timing(load_seconds=0.0, first_call_ms=0.0)
        protocol = Protocol(warmup=warmup, min_iters=iters, min_seconds=min_seconds, block=1,
                            min_blocks=3)  # fmt: skip
        measure_interleaved({"m": runner}, {"m": staged}, {"m": timing}, protocol)
    times = timing.samples_ms / 1e3
    return {"median_s": float(np.median(times)), "p90_s": float(np.quantile(times, 0.9)),
            "samples": len(times)}  # fmt: skip


def bench_backbone(name: str, args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = build_classifier(name, 100, stem="cifar").eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size), np.float32)
    paths, seconds = {"fp32": tmp / f"{name}.onnx"}, {}
    t0 = time.perf_counter()
    trace(model, paths["fp32"], "dynamo", size=args.size, opset=18, outputs=("logits",))
    seconds["fp32"] = time.perf_counter() - t0
    paths["fp16"], t0 = tmp / f"{name}.fp16.onnx", time.perf_counter()
    convert_fp16(paths["fp32"], paths["fp16"])
    seconds["fp16"] = time.perf_counter() - t0
    calib = [x[i : i + 16] for i in range(0, args.calibration, 16)]
    # int8: what `abrl export --precision int8` writes for CPUs (uint8 activations, int8 weights);
    # int8-s8: the form written before issue 13 (int8 activations, asymmetric);
    # int8-sym: the TensorRT form (int8, zero points 0).
    for key, form in (("int8", "cpu"), ("int8-s8", "cpu-s8"), ("int8-sym", "trt")):
        paths[key], t0 = tmp / f"{name}.{key}.onnx", time.perf_counter()
        reader = ImageCalibrationReader(calib, "images")
        quantize_int8(paths["fp32"], paths[key], reader, form=form)
        seconds[key] = time.perf_counter() - t0
    rows = {}
    for precision, path in paths.items():
        lat = latency(path, x, args.warmup, args.iters, args.min_seconds)
        rows[precision] = {"export_seconds": seconds[precision],
                           "size_mib": path.stat().st_size / 2**20, **lat}  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="resnet18,resnet50")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--calibration", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/export.json"))
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones.split(","):
            results[name] = bench_backbone(name, args, Path(tmp))
    report = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
        },  # fmt: skip
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"ONNX Runtime CPU, batch {args.batch}, {args.size}x{args.size}, 100 classes")
    head = ("model", "prec", "export s", "MiB", "p50 ms", "p90 ms", "n")
    print("{:10s} {:8s} {:>9s} {:>7s} {:>8s} {:>8s} {:>4s}".format(*head))
    for name, rows in results.items():
        for prec, r in rows.items():
            ms = (1e3 * r["median_s"], 1e3 * r["p90_s"])
            print(f"{name:10s} {prec:8s} {r['export_seconds']:9.1f} {r['size_mib']:7.1f} "
                  f"{ms[0]:8.1f} {ms[1]:8.1f} {r['samples']:4d}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
