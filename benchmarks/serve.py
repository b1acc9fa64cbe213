"""Throughput and latency of ``abrl serve`` on loopback, beside the ``Predictor`` in-process.

    .venv/bin/python benchmarks/serve.py [MODEL] [--requests 200] [--clients 4] [--batch 64]
        [--backend auto] [--threads N] [--workers 1] [--concurrency 1] [--iters 30] [--out FILE]

MODEL is an exported .onnx with an abrl card [default: runs/demo-abrl/model.onnx, from
``make demo``]. The images are ``--batch`` random PNGs of the card's input size. First the
Predictor's own latency on those PNG files (median of ``--iters`` calls, decoding included);
then ``abrl serve`` in a subprocess and a bounded load: ``--requests`` multipart POSTs of the
whole batch from ``--clients`` threads, each with a keep-alive connection. Prints a table and
writes JSON; never a pass/fail test.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.bench.environment import environment
from abrl_deploy.predictor import Predictor


def write_pngs(folder: Path, count: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
        paths.append(folder / f"{i:03d}.png")
        paths[-1].write_bytes(buf.getvalue())
    return paths


def predictor_latency(predictor: Predictor, paths: list[Path], iters: int) -> tuple[dict, list]:
    """Median and p90 seconds of ``Predictor.predict`` on the files; its answers, as the oracle."""
    files = [str(path) for path in paths]
    for _ in range(3):
        expected = [r.to_dict() for r in predictor.predict(files)]
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        predictor.predict(files)
        times.append((time.perf_counter_ns() - t0) / 1e9)
    return {"backend": predictor.backend, "median_s": statistics.median(times),
            "p90_s": float(np.quantile(times, 0.9)), "calls": len(times)}, expected  # fmt: skip


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "abrl_deploy.cli", "serve", str(args.model), "--port", str(port),
           "--backend", args.backend, "--workers", str(args.workers),
           "--max-batch", str(max(args.batch, 64)), "--max-body-mb", "256",
           "--concurrency", str(args.concurrency)]  # fmt: skip
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"abrl serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit("abrl serve did not answer /healthz within 120 s")
        time.sleep(0.1)


def load(url: str, files: list, requests: int, clients: int) -> tuple[list[float], float, list]:
    """``requests`` POSTs split over ``clients`` threads: per-request seconds, wall seconds, and
    every answer's predictions (to check them after the clock stops)."""
    latencies: list[float] = []
    answers: list = []
    lock = threading.Lock()

    def client(count: int) -> None:
        with httpx.Client(timeout=300) as http:
            for _ in range(count):
                t0 = time.perf_counter_ns()
                r = http.post(url, files=files)
                seconds = (time.perf_counter_ns() - t0) / 1e9
                with lock:
                    latencies.append(seconds)
                    answers.append(r.json()["predictions"] if r.status_code == 200 else r.text)

    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(n,)) for n in shares if n]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", type=Path, default=Path("runs/demo-abrl/model.onnx"))
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--batch", type=int, default=64, help="images per request")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1, help="abrl serve --concurrency")
    p.add_argument("--iters", type=int, default=30, help="timed Predictor calls")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/serve.json"))
    args = p.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Predictor(args.model, backend=args.backend, threads=args.threads) as predictor,
    ):
        size = predictor.card.input_size
        paths = write_pngs(Path(tmp), args.batch, size)
        in_process, expected = predictor_latency(predictor, paths, args.iters)
        files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    port = free_port()
    server = start_server(args, port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    try:
        load(url, files, requests=2 * args.clients, clients=args.clients)  # warm-up
        latencies, wall, answers = load(url, files, args.requests, args.clients)
        served_backend = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["runtime"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    failed = sum(a != expected for a in answers)
    served = {"backend": served_backend.get("backend"), "requests": len(latencies),
              "failed_or_different": failed, "wall_s": wall,
              "requests_per_s": len(latencies) / wall,
              "images_per_s": len(latencies) * args.batch / wall,
              "p50_s": float(np.quantile(latencies, 0.5)),
              "p99_s": float(np.quantile(latencies, 0.99))}  # fmt: skip
    report = {"config": vars(args) | {"model": str(args.model), "out": str(args.out),
                                      "input_size": size},
              "environment": environment(), "predictor": in_process, "serve": served}  # fmt: skip
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"{args.model}: batch of {args.batch} PNGs {size}x{size}, {args.requests} requests "
          f"from {args.clients} clients, {args.workers} worker(s)")  # fmt: skip
    print(f"{'':22s} {'p50 ms':>9s} {'p99/p90 ms':>11s} {'req/s':>8s} {'images/s':>9s}")
    ms = 1e3 * in_process["median_s"], 1e3 * in_process["p90_s"]
    print(f"{'Predictor in-process':22s} {ms[0]:9.1f} {ms[1]:11.1f} {1e3 / ms[0]:8.1f} "
          f"{args.batch * 1e3 / ms[0]:9.0f}   ({in_process['backend']}, p90)")  # fmt: skip
    print(f"{'abrl serve over HTTP':22s} {1e3 * served['p50_s']:9.1f} {1e3 * served['p99_s']:11.1f}"
          f" {served['requests_per_s']:8.1f} {served['images_per_s']:9.0f}"
          f"   ({served['backend']}, p99)")  # fmt: skip
    if failed:
        print(f"WARNING: {failed} responses failed or differ from the Predictor's answers")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
