"""Train the cells of an ``abrl reproduce`` grid in N processes at once on one machine.

``abrl reproduce`` trains its cells one after another. On a machine with one big GPU and many
cores (the lent H200), one small run leaves most of it idle; this script trains N cells at a time
with the same planner and the same ``run_cell`` (so each run is exactly the cell ``abrl
reproduce`` would train, reused by ``abrl reproduce --resume`` afterwards), then prints one line
per finished cell and writes a JSON of what ran. ``--executor ray`` does not replace it on such
a machine: it reserves a whole GPU per CUDA cell, so one GPU runs one cell at a time.

    python benchmarks/grid_parallel.py --preset transfer-cpu --seeds 0,1,2 --out runs/transfer \
        --jobs 8 [--variants finetune,abrl] [--threads 2]
    abrl reproduce --preset transfer-cpu --seeds 0,1,2 --out runs/transfer --report-only

Each process gets ``--threads`` CPU threads. Cells run seed-major, so a grid cut short has whole
seeds first.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import time
from pathlib import Path


def _train(cell, threads: int) -> dict:
    import torch

    from abrl_deploy.reproduce.runner import run_cell

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        result = run_cell(cell, force=False)
    except Exception as e:  # one cell's failure is reported, the others go on
        return {"cell": str(cell.run_dir), "error": f"{type(e).__name__}: {e}"}
    head = result.head
    return {
        "cell": str(cell.run_dir),
        "action": result.action,
        "seconds": round(time.perf_counter() - t0, 1),
        "test_top1": result.metrics.get("test_top1"),
        "refit_top1": (head.get("refit_head") or {}).get("top1"),
        "own_top1": (head.get("own_head") or {}).get("top1"),
    }


def main() -> None:
    from abrl_deploy.reproduce import ReproduceSpec
    from abrl_deploy.reproduce.plan import plan_grid

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="transfer-cpu")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 4))
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--limit", type=int, default=None, help="at most N training images a run")
    p.add_argument("--variants", default=None, help="comma-separated subset of the grid's")
    p.add_argument(
        "--deadline",
        type=float,
        default=float("inf"),
        help="seconds after which no new cell starts",
    )
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="JSON of the finished cells (default OUT/grid_parallel.json)",
    )
    a = p.parse_args()
    spec = ReproduceSpec(preset=a.preset, seeds=tuple(int(s) for s in a.seeds.split(",")),
                         out=a.out, resume=True, overrides=tuple(
                             (k, v) for k, v in (("epochs", a.epochs), ("limit", a.limit))
                             if v is not None))  # fmt: skip
    cells = plan_grid(spec)
    if a.variants:
        keep = set(a.variants.split(","))
        cells = [c for c in cells if c.variant in keep]
    summary_path = a.summary or a.out / "grid_parallel.json"
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(cells)} cells, {a.jobs} at a time, {a.threads} threads each", flush=True)
    rows, t0 = [], time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked into workers
    todo, running = list(cells), set()
    with cf.ProcessPoolExecutor(a.jobs, mp_context=ctx) as pool:
        while todo or running:
            # no new cell after the deadline: a cell cut off by a time limit is lost work
            while todo and len(running) < a.jobs and time.perf_counter() - t0 < a.deadline:
                running.add(pool.submit(_train, todo.pop(0), a.threads))
            if not running:
                break
            done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in done:
                row = f.result()
                row["elapsed"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
                summary_path.write_text(json.dumps(rows, indent=1) + "\n")
    if todo:
        print(
            f"deadline: {len(todo)} cells not started: "
            + ", ".join(f"{c.variant}/seed{c.seed}" for c in todo),
            flush=True,
        )
    failed = [r for r in rows if "error" in r]
    print(f"done in {time.perf_counter() - t0:.0f} s; {len(failed)} failed", flush=True)


if __name__ == "__main__":
    main()
