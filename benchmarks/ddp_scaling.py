"""Training throughput on 1 and N processes (torch.distributed, gloo on the CPU), and what the
collectives cost per step: ABRL's feature gathers and the gradient all-reduce.

    .venv/bin/python benchmarks/ddp_scaling.py [--methods abrl,finetune] [--processes 1,2]
        [--limit 320] [--batch-size 32] [--image-size 32] [--epochs 3] [--rounds 2] [--out FILE]

Each configuration runs the real trainer (abrl_deploy.training.train) on the embedded digits, one
worker per process started like torchrun would (RANK, WORLD_SIZE, ... in the environment), with
the machine's cores split evenly between the processes. Samples per second count the rows of the
global batch over the training loop's time (data loading included, evaluation excluded), median
over the epochs after the first of every round. Collective times are wall time on rank 0, so
they include waiting for the slower rank. Prints a table and writes JSON. Timing is a
benchmark, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _timed(stats: dict, key: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stats[key] = stats.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def _instrument(stats: dict) -> None:
    """Time the gathers (forward all_gather and backward all_reduce) and the gradient average."""
    from abrl_deploy.training import distributed

    gather = distributed._GatherRows
    gather.forward = staticmethod(_timed(stats, "gather_s", gather.forward))
    gather.backward = staticmethod(_timed(stats, "gather_s", gather.backward))
    distributed.average_gradients = _timed(stats, "grad_allreduce_s", distributed.average_gradients)


def _worker(rank: int, world: int, port: int, cfg: dict, threads: int, result: str) -> None:
    if world > 1:
        os.environ.update(
            RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        )  # fmt: skip
    torch.set_num_threads(threads)
    from abrl_deploy.training import TrainConfig, train

    stats: dict = {}
    _instrument(stats)
    with tempfile.TemporaryDirectory() as out:
        res = train(TrainConfig(**cfg), Path(out) / "run", quiet=True)
    if rank == 0:
        Path(result).write_text(json.dumps({"history": res.history, "stats": stats}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(method: str, world: int, args) -> dict:
    """One training run; the rates of every epoch after the first (warm-up), collective times."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // world)
    cfg = dict(method=method, epochs=args.epochs, limit=args.limit, batch_size=args.batch_size,
               image_size=args.image_size, device="cpu", head_refit=False)  # fmt: skip
    if method == "abrl":
        cfg["inner_lr"] = "auto"
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        mp.spawn(_worker, args=(world, _free_port(), cfg, threads, str(result)), nprocs=world)
        data = json.loads(result.read_text())
    steps = sum(r["steps"] for r in data["history"])
    return {
        "threads": threads,
        "rates": [r["steps"] * args.batch_size / r["seconds"] for r in data["history"][1:]],
        # the instrumented functions run in every step of every epoch
        "gather_ms": 1e3 * data["stats"].get("gather_s", 0.0) / steps,
        "allreduce_ms": 1e3 * data["stats"].get("grad_allreduce_s", 0.0) / steps,
    }


def summarise(method: str, world: int, runs: list[dict], args) -> dict:
    rates = [x for r in runs for x in r["rates"]]
    return {
        "method": method,
        "processes": world,
        "threads_per_process": runs[0]["threads"],
        "global_batch": args.batch_size,
        "samples_per_s": statistics.median(rates),
        "samples_per_s_all": rates,
        "gather_ms_per_step": statistics.median(r["gather_ms"] for r in runs),
        "grad_allreduce_ms_per_step": statistics.median(r["allreduce_ms"] for r in runs),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="abrl,finetune")
    p.add_argument("--processes", default="1,2")
    p.add_argument("--limit", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp_scaling.json"))
    args = p.parse_args()
    load_before = os.getloadavg()
    configs = [(m, int(n)) for m in args.methods.split(",") for n in args.processes.split(",")]
    runs: dict = {c: [] for c in configs}
    for _ in range(args.rounds):  # interleaved, so that drift on a busy machine hits all alike
        for method, world in configs:
            runs[method, world].append(measure(method, world, args))
    rows = [summarise(m, n, runs[m, n], args) for m, n in configs]
    for r in rows:
        base = next(b for b in rows if b["method"] == r["method"])
        r["speedup_vs_first"] = r["samples_per_s"] / base["samples_per_s"]
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "backend": "gloo",
            # other work on the machine skews every figure: recorded, not corrected for
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        },  # fmt: skip
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"resnet18, digits {args.image_size}px, global batch {args.batch_size}, CPU (gloo), "
          f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")  # fmt: skip
    print(f"median of {args.rounds} rounds x {args.epochs - 1} epochs; ms per step on rank 0")
    print("method    procs threads  samples/s  speedup  gather ms/step  grad all-reduce ms/step")
    for r in rows:
        print(
            f"{r['method']:9s} {r['processes']:5d} {r['threads_per_process']:7d} "
            f"{r['samples_per_s']:10.1f} {r['speedup_vs_first']:8.2f} "
            f"{r['gather_ms_per_step']:15.1f} {r['grad_allreduce_ms_per_step']:24.1f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
