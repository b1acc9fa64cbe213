"""The GPU check behind benchmarks/gpu_check.sh: every step on a machine with an NVIDIA GPU, each
recorded (ran, failed or skipped, with why) in one JSON.

Steps: the `gpu`-marked tests; `abrl train` of the paper preset's shape (ResNet-50, ImageNet stem,
224 px, batch 64, bf16 autocast by --precision auto) for fine-tune and ABRL, a few hundred steps,
with step time and peak memory, and one fine-tune run in fp32 beside it; the demo's two models
trained on the GPU and benched with the torch-cuda backend (and ONNX Runtime on the CPU when the
export works there). TensorRT and onnxruntime-gpu are not on such machines: recorded as skipped.

The data are the embedded digits (scikit-learn), upsampled to 224 px: the paper's datasets are
not on a machine without network, and the step's cost depends on the shape, not the pixels.

    python3 benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json [--device cpu --smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ABRL = [sys.executable, "-m", "abrl_deploy.cli"]
_SAVE: list = []  # the report and its path, rewritten after every step (a timeout keeps them)


def run_step(name: str, cmd: list[str], timeout: int, steps: list[dict[str, Any]]) -> bool:
    """Run ``cmd``; record its status, time and the tail of its output. True when it passed."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = 124, f"timed out after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}"
    seconds = round(time.perf_counter() - t0, 1)
    status = "passed" if rc == 0 else "failed"
    steps.append({"step": name, "status": status, "returncode": rc, "seconds": seconds,
                  "command": " ".join(cmd), "output_tail": output[-2500:]})  # fmt: skip
    print(output[-1500:], flush=True)
    print(f"== {name}: {status} in {seconds} s", flush=True)
    _save()
    return rc == 0


def skip(name: str, reason: str, steps: list[dict[str, Any]]) -> None:
    steps.append({"step": name, "status": "skipped", "reason": reason})
    print(f"== {name}: skipped ({reason})", flush=True)
    _save()


def _save() -> None:
    if _SAVE:
        _write(*_SAVE, quiet=True)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Step time (epochs after the first: cuDNN autotuning and allocator warm-up), peak memory,
    what precision ran and the heads' accuracy, from the run's own files."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    card = json.loads((run_dir / "card.json").read_text())
    timed = rows[1:] or rows
    steps = sum(r["steps"] for r in timed)
    return {
        "epochs": len(rows),
        "steps": sum(r["steps"] for r in rows),
        "step_ms_after_first_epoch": round(1000 * sum(r["seconds"] for r in timed) / steps, 1),
        "first_epoch_step_ms": round(1000 * rows[0]["seconds"] / rows[0]["steps"], 1),
        "images_per_second": round(sum(r["images_per_second"] for r in timed) / len(timed), 1),
        "peak_memory_mb": max(r.get("cuda_peak_memory_mb", 0) for r in rows),
        "training": card.get("training", {}),
        "test_top1_saved_head": card["metrics"]["test_top1"],
        "own_head_top1": card["head"]["own_head"]["top1"],
        "refit_head_top1": card["head"]["refit_head"]["top1"],
    }


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    from abrl_deploy import machine

    env["cpu"], env["cpu_flags"], env["cpu_count"] = (
        machine.cpu_model(), machine.cpu_flags(), os.cpu_count()
    )  # fmt: skip
    for name in ("onnx", "onnxruntime", "tensorrt", "sklearn", "tensorboard"):
        spec = importlib.util.find_spec(name)
        env[f"has_{name}"] = spec is not None
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    p.add_argument("--work", type=Path, default=Path("/tmp/abrl-gpu-check"))
    p.add_argument("--device", default="cuda", help="cpu only to try the script's plumbing")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, not a GPU")
    p.add_argument("--epochs", type=int, default=10, help="ResNet-50 epochs (~20 steps each)")
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    steps: list[dict[str, Any]] = []
    report: dict[str, Any] = {"environment": environment(), "steps": steps, "runs": {}}
    _SAVE[:] = [args.out, report]
    cuda = report["environment"]["cuda_available"]
    if args.device == "cuda" and not cuda:
        skip("everything", "no CUDA device is visible to PyTorch", steps)
        return _write(args.out, report)

    if cuda:
        run_step("gpu tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu",
                               "-p", "no:cacheprovider", "tests/gpu"], 300, steps)  # fmt: skip
    else:
        skip("gpu tests", "no CUDA device", steps)

    size = ["--image-size", "32", "--limit", "300"] if args.smoke else []
    epochs = "1" if args.smoke else str(args.epochs)
    common = ["--config", "configs/paper-cifar100.yaml", "--dataset", "digits", "--seed", "0",
              "--device", args.device, "--workers", str(args.workers), "--quiet", "--force",
              "--data-cache", "off", *size]  # fmt: skip
    r50 = [("resnet50-finetune-auto", ["--method", "finetune", "--epochs", epochs]),
           ("resnet50-abrl-auto", ["--method", "abrl", "--epochs", epochs]),
           ("resnet50-finetune-fp32", ["--method", "finetune", "--precision", "fp32",
                                       "--epochs", "1" if args.smoke else "4"])]  # fmt: skip
    for name, extra in r50:
        out = args.work / name
        if run_step(f"train {name}", [*ABRL, "train", *common, *extra, "--out", str(out)],
                    420, steps):  # fmt: skip
            report["runs"][name] = run_summary(out)
            _save()

    demo = {}
    for method in ("abrl", "finetune"):
        out = args.work / f"demo-{method}"
        cmd = [*ABRL, "train", "--config", "configs/cpu-small.yaml", "--method", method,
               "--device", args.device, "--out", str(out), "--quiet", "--force",
               "--data-cache", "off", *(["--limit", "300"] if args.smoke else [])]  # fmt: skip
        if run_step(f"train demo-{method}", cmd, 300, steps):
            demo[method] = out
            report["runs"][f"demo-{method}"] = run_summary(out)
    if len(demo) == 2:
        backends = ["torch", "torch-cuda"] if cuda else ["torch"]
        exported = all(
            run_step(f"export demo-{m}", [*ABRL, "export", str(d), "--force"], 300, steps)
            for m, d in demo.items()
        )
        if exported:
            backends.append("ort-cpu")
        bench_json = args.work / "demo-bench.json"
        cmd = [*ABRL, "bench", str(demo["abrl"]), "--baseline", str(demo["finetune"]),
               "--batch", "64", "--backend", ",".join(backends), "--quiet", "--force",
               "--report", str(bench_json)]  # fmt: skip
        if run_step("bench demo (torch-cuda)", cmd, 420, steps):
            report["bench"] = _bench_summary(json.loads(bench_json.read_text()))
    else:
        skip("bench demo (torch-cuda)", "a demo model did not train", steps)
    for name in ("ort-cuda", "ort-trt", "trt"):
        skip(f"bench {name}", "TensorRT and onnxruntime-gpu are not installed on this machine",
             steps)  # fmt: skip
    _write(args.out, report)


def _bench_summary(bench: dict[str, Any]) -> dict[str, Any]:
    rows = [
        {"model": Path(r["model"]).name, "backend": r["backend"],
         "p50_ms": r["latency"]["p50_ms"], "top1": r["accuracy"]["top1"]}
        for r in bench["results"]
    ]  # fmt: skip
    verdicts = [
        {k: c.get(k) for k in ("backend", "statistic", "ratio", "low", "high", "verdict")}
        for c in bench.get("comparisons", [])
    ]
    return {"rows": rows, "comparisons": verdicts}


def _write(path: Path, report: dict[str, Any], quiet: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = {s: sum(1 for x in report["steps"] if x["status"] == s)
              for s in ("passed", "failed", "skipped")}  # fmt: skip
    report["summary"] = counts
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    if not quiet:
        print(json.dumps({"summary": counts, "runs": report["runs"]}, indent=1))


if __name__ == "__main__":
    main()
