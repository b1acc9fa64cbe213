"""Does ``abrl bench`` measure what a plain loop measures? Its ORT CPU median at batch 64 against
a bare ``session.run`` loop on the same model and the same input tensor, alternated in one run.

    .venv/bin/python benchmarks/bench_fidelity.py [MODEL] [--rounds 5] [--out FILE]

MODEL is a run directory or an .onnx file with an abrl card [default: runs/demo-abrl, from
``make demo``]. Prints both medians per round and their relative difference; writes JSON.
Never a pass/fail test: the target (within 3%) is printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.bench import BenchSpec, Protocol, run_bench
from abrl_deploy.bench.environment import environment
from abrl_deploy.bench.images import eval_images, timing_batch
from abrl_deploy.bench.models import ModelFacts, resolve_model


def plain_loop(onnx: Path, x: np.ndarray, warmup: int, iters: int) -> float:
    """Median ms of ``session.run`` with ONNX Runtime's default session options."""
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="runs/demo-abrl")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_fidelity.json"))
    args = parser.parse_args()

    source = resolve_model(args.model, ModelFacts())
    onnx = source.artifacts.get("onnx")
    if onnx is None:
        raise SystemExit(f"{args.model} has no model.onnx; run make demo (or abrl export) first")
    images, _ = eval_images(source.card, None, args.batch)
    x = timing_batch(images, args.batch)  # the very tensor the bench times
    spec = BenchSpec(models=(onnx,), backends=("ort-cpu",), batch=args.batch, limit=args.batch,
                     protocol=Protocol(warmup=5, min_iters=args.iters, min_seconds=0))  # fmt: skip
    rows = []
    for i in range(args.rounds):
        report = run_bench(spec)
        bench_ms = report["results"][0]["latency"]["p50_ms"]
        loop_ms = plain_loop(onnx, x, warmup=5, iters=args.iters)
        rows.append({"round": i, "bench_p50_ms": bench_ms, "plain_loop_median_ms": loop_ms})
        print(f"round {i}: abrl bench p50 {bench_ms:.2f} ms   plain session.run loop median "
              f"{loop_ms:.2f} ms   ({bench_ms / loop_ms - 1:+.2%})")  # fmt: skip
    bench_ms = statistics.median(r["bench_p50_ms"] for r in rows)
    loop_ms = statistics.median(r["plain_loop_median_ms"] for r in rows)
    diff = bench_ms / loop_ms - 1
    print(
        f"median over rounds: bench {bench_ms:.2f} ms, plain loop {loop_ms:.2f} ms, "
        f"difference {diff:+.2%} ({'within' if abs(diff) <= 0.03 else 'OUTSIDE'} 3%)"
    )
    result = {"model": str(onnx), "batch": args.batch, "iters": args.iters, "rounds": rows,
              "bench_p50_ms": bench_ms, "plain_loop_median_ms": loop_ms, "difference": diff,
              "within_3_percent": abs(diff) <= 0.03, "environment": environment()}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
