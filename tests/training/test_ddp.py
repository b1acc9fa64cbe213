"""Several processes (gloo on the CPU): each method's step on 2 ranks equals one process on the
combined batch; rank 0 alone writes the run directory; a run resumes on another number of
processes; torchrun's environment is checked. Workers are started with torch.multiprocessing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from typer.testing import CliRunner

from abrl_deploy import atomic
from abrl_deploy.cli import app
from abrl_deploy.errors import ConfigError
from abrl_deploy.training import TrainConfig, distributed, train
from abrl_deploy.training.batches import EpochBatchSampler
from abrl_deploy.training.checkpoint import RUN_FILES, load_classifier
from abrl_deploy.training.methods import base as method_base
from abrl_deploy.training.methods import get_method
from abrl_deploy.training.models import Classifier
from abrl_deploy.training.trainer import Trainer, _check_batches

WORLD = 2
D, C = 8, 3
# the batch problem: its head system is what ranks must gather rows for (amortized and memory
# solve on the whole split; their rank-equivalence is not tested here)
ABRL = dict(
    method="abrl",
    lambda_=0.3,
    inner_steps=4,
    inner_lr=0.5,
    penalty_norm=False,
    inner_problem="batch",
)
STEP_CONFIGS = {  # float64, so that 1e-8 separates right from wrong
    "abrl": dict(ABRL, solver="exact"),
    "abrl-cg": dict(ABRL, solver="cg", cg_rtol=1e-12, cg_max_iter=200),
    "abrl-unrolled": dict(ABRL, hypergrad="unrolled", inner_solve="steps"),
    "finetune": dict(method="finetune"),
    "joint": dict(method="joint", lambda_=0.3, penalty_norm=False),
    "simclr": dict(method="simclr"),
}
GATHERING = ("abrl", "abrl-unrolled", "joint", "simclr")  # losses that couple a batch's rows


# --- launching workers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for a worker."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)  # 2 workers on 2 shared cores


def spawn(fn, *args, timeout: float = 240) -> None:
    """Run ``fn(rank, WORLD, port, *args)`` in WORLD processes; fail rather than hang."""
    ctx = mp.spawn(fn, args=(WORLD, free_port(), *args), nprocs=WORLD, join=False)
    end = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"workers still running after {timeout} s (a collective hangs?)")


# --- one method step on tiny models, 2 ranks against 1 process -----------------------------------


def tiny_model(batchnorm: bool) -> Classifier:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1)]
    layers += [nn.BatchNorm2d(4)] if batchnorm else []
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, D), nn.Tanh()]
    return Classifier(nn.Sequential(*layers), D, C)


def global_batches(method: str, step: int):
    """The combined batch of one step: 8 train rows (two views each for SimCLR), 4 validation."""
    g = torch.Generator().manual_seed(100 + step)
    shape = (8, 2, 3, 6, 6) if method == "simclr" else (8, 3, 6, 6)
    x, xv = torch.randn(shape, generator=g), torch.randn(4, 3, 6, 6, generator=g)
    return (x, torch.randperm(8, generator=g) % C), (xv, torch.arange(4) % C)


def run_steps(name: str) -> dict:
    """Two outer steps (step, average gradients, SGD) on this rank's part of each batch."""
    torch.set_default_dtype(torch.float64)
    try:
        cfg = TrainConfig(**STEP_CONFIGS[name])
        cls = get_method(cfg.method)
        # finetune keeps per-process BatchNorm, as DDP does: it equals one process without BN.
        model = tiny_model(batchnorm=cls.sync_batchnorm)
        if cls.sync_batchnorm:
            model = distributed.convert_sync_batchnorm(model, torch.device("cpu"))
        method = cls(cfg, model, None, torch.device("cpu"))
        params = method.parameters()
        opt = torch.optim.SGD(params, lr=0.1)
        rank, world = distributed.rank(), distributed.world_size()

        def part(t):
            n = len(t) // world
            return t[rank * n : (rank + 1) * n]

        grads = []
        for step in range(2):
            (x, y), (xv, yv) = global_batches(cfg.method, step)
            val = (part(xv), part(yv)) if cls.needs_val_batch else None
            opt.zero_grad(set_to_none=True)
            method.step((part(x), part(y)), val)
            distributed.average_gradients(params)
            grads.append([p.grad.clone() for p in params if p.grad is not None])
            opt.step()
        state = dict(flat_tensors(method.state_dict()))
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        return {"grads": grads, "state": state, "buffers": buffers}
    finally:
        torch.set_default_dtype(torch.float32)


def flat_tensors(state: dict, prefix: str = ""):
    for k, v in state.items():
        if torch.is_tensor(v):
            yield prefix + k, v.clone()
        elif isinstance(v, dict):
            yield from flat_tensors(v, f"{prefix}{k}.")


@contextlib.contextmanager
def without_gather():
    """The biased variant: each rank uses only its own rows (per-rank hypergradients averaged)."""
    saved = distributed.gather_rows, method_base.gather_rows

    def own(x):
        return x

    distributed.gather_rows = method_base.gather_rows = own
    from abrl_deploy.training.methods import simclr

    simclr.gather_rows = own
    try:
        yield
    finally:
        distributed.gather_rows, method_base.gather_rows = saved
        simclr.gather_rows = saved[1]


def _step_worker(rank: int, world: int, port: int, out: Path) -> None:
    join_env(rank, world, port)
    with distributed.process_group():
        assert distributed.world_size() == world
        for name in STEP_CONFIGS:
            torch.save(run_steps(name), out / f"{name}-{rank}.pt")
        with without_gather():
            for name in GATHERING:
                torch.save(run_steps(name), out / f"{name}-{rank}-ungathered.pt")


def gradient_error(got: dict, want: dict) -> float:
    """The largest, over steps, relative error of all parameter gradients taken as one vector."""
    errors = []
    for gs, ws in zip(got["grads"], want["grads"], strict=True):
        g, w = torch.cat([t.flatten() for t in gs]), torch.cat([t.flatten() for t in ws])
        errors.append(((g - w).norm() / w.norm()).item())
    return max(errors)


@pytest.fixture(scope="module")
def step_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-steps")
    spawn(_step_worker, out)
    return out


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_two_ranks_equal_one_process_on_the_combined_batch(step_results, name):
    want = run_steps(name)  # one process, no process group, the whole batch
    # NT-Xent runs in float32 (simclr.py), the rest in float64
    tol = dict(rtol=1e-5, atol=1e-8) if name == "simclr" else dict(rtol=1e-8, atol=1e-12)
    for rank in range(WORLD):
        got = torch.load(step_results / f"{name}-{rank}.pt", weights_only=True)
        for gs, ws in zip(got["grads"], want["grads"], strict=True):
            assert len(gs) == len(ws) > 0
            for g, w in zip(gs, ws, strict=True):
                torch.testing.assert_close(g, w, **tol)
        # ABRL's head, v and centre; SimCLR's projector; synced BatchNorm running statistics
        assert got["state"].keys() == want["state"].keys()
        for k in want["state"]:
            torch.testing.assert_close(got["state"][k], want["state"][k], **tol, msg=k)
        for k in want["buffers"]:
            torch.testing.assert_close(got["buffers"][k], want["buffers"][k], **tol, msg=k)


@pytest.mark.parametrize("name", GATHERING)
def test_without_gathering_the_gradient_is_wrong(step_results, name):
    """The oracle above can fail: per-rank losses, averaged, miss it by far more than tolerance."""
    want = run_steps(name)
    for rank in range(WORLD):
        got = torch.load(step_results / f"{name}-{rank}-ungathered.pt", weights_only=True)
        assert gradient_error(got, want) > 0.1


def test_rank_batches_together_are_one_process_batches():
    def batches(rank: int, world: int, n: int = 22) -> list[list[int]]:
        g = torch.Generator().manual_seed(3)
        return list(EpochBatchSampler(n, 6, g, rank, world))

    one = batches(0, 1)
    assert [len(b) for b in one] == [6, 6, 6, 4]  # the last partial batch is kept
    assert sorted(i for b in one for i in b) == list(range(22))
    assert [a + b for a, b in zip(batches(0, 2), batches(1, 2), strict=True)] == one
    # Four processes: batches of 4 (6 cut to a multiple of 4), the 2 left over are dropped.
    four = [sum(parts, []) for parts in zip(*(batches(r, 4) for r in range(4)), strict=True)]
    assert [len(b) for b in four] == [4] * 5


def test_batch_sizes_must_split_over_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    _check_batches(TrainConfig(batch_size=16, val_batch_size=8), needs_val_batch=True)
    with pytest.raises(ConfigError) as err:
        _check_batches(TrainConfig(batch_size=10, val_batch_size=6), needs_val_batch=True)
    assert "--batch-size 10" in str(err.value) and "validation batch 6" in str(err.value)


# --- the run directory: written by rank 0 only, resumed on another number of processes ----------

# First-order, on purpose: with these tiny float32 batches CG stops at its iteration cap far from
# converged, and its output then moves with the last bits of its input, so a comparison of whole
# runs would measure that, not the plumbing. The implicit solve on gathered rows is checked above.
# fp32: N processes equal one up to fp32 rounding; under bf16 autocast (auto on a bf16 CPU) the
# order of the reductions moves weights by more than the tolerance below.
RUN = dict(method="abrl", hypergrad="first-order", lr=1e-3, epochs=2, limit=40, batch_size=8,
           image_size=16, device="cpu", precision="fp32")  # fmt: skip
FINETUNE = dict(method="finetune", epochs=1, limit=24, batch_size=8, image_size=16, device="cpu",
                precision="fp32")  # fmt: skip


@contextlib.contextmanager
def run_patches(log: Path, snapshot: Path | None):
    """Log every atomic write (all run-directory writes are); copy the run directory as a kill
    after epoch 1 would leave it; keep each rank's model at each checkpoint; train on
    un-augmented images, so that 2 processes and 1 see the same rows (random crops are drawn per
    process, in the order its own rows load)."""
    from abrl_deploy.training.data import load

    saved = atomic.atomic_open, Trainer._checkpoint, load.train_transform

    @contextlib.contextmanager
    def logging_open(path, mode="w"):
        with saved[0](path, mode) as f:
            yield f
        with open(log, "a") as out:
            out.write(Path(path).name + "\n")

    def checkpoint(self):
        saved[1](self)
        if snapshot is not None and self.epoch == 1 and distributed.is_main():
            shutil.copytree(self.out, snapshot)
        # each rank's replica as it is saved, to compare the ranks
        torch.save(
            self.model.state_dict(), self.out.parent / f"{self.out.name}-{distributed.rank()}.pt"
        )

    atomic.atomic_open, Trainer._checkpoint = logging_open, checkpoint
    load.train_transform = load.eval_transform
    try:
        yield
    finally:
        atomic.atomic_open, Trainer._checkpoint, load.train_transform = saved


def _train_worker(rank, world, port, out: Path, snapshot: Path) -> None:
    join_env(rank, world, port)
    with run_patches(out.parent / f"writes-{rank}.txt", snapshot):
        train(TrainConfig(**RUN), out, quiet=True)
    with run_patches(out.parent / "finetune-writes.txt", None):  # per-process BatchNorm
        train(TrainConfig(**FINETUNE), out.parent / "finetune", quiet=True)


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_dir_written_once_by_rank_0_and_resumed_on_1_process(tmp_path):
    two, resumed = tmp_path / "two", tmp_path / "resumed"
    spawn(_train_worker, two, resumed)  # 2 processes; `resumed` is the copy after epoch 1
    assert not (tmp_path / "writes-1.txt").exists()
    assert (tmp_path / "writes-0.txt").read_text().split() == [
        "config.yaml", "state.pt", "metrics.jsonl", "state.pt", "metrics.jsonl",
        "model.safetensors", "card.json",
    ]  # fmt: skip
    assert sorted(p.name for p in two.iterdir()) == sorted(RUN_FILES)  # no temporary files left
    _, card = load_classifier(two)
    assert card.metrics["epochs"] == 2 and card.head["source"] == "refit"
    # The ranks hold one model, finetune's BatchNorm statistics included (rank 0's are kept).
    for run in ("two", "finetune"):
        ranks = [torch.load(tmp_path / f"{run}-{r}.pt", weights_only=True) for r in range(WORLD)]
        for k, v in ranks[0].items():
            assert torch.equal(v, ranks[1][k]), (run, k)
    assert sorted(p.name for p in (tmp_path / "finetune").iterdir()) == sorted(RUN_FILES)

    with run_patches(tmp_path / "writes-resumed.txt", None):
        train(None, resumed, resume=True, quiet=True)  # 1 process, from the 2-process checkpoint
    rows, rows_two = metrics(resumed), metrics(two)
    assert [r["processes"] for r in rows] == [2, 1] and rows[0] == rows_two[0]
    state, state_two = (torch.load(d / "state.pt", weights_only=True) for d in (resumed, two))
    assert (
        state["method"]["steps_done"] == state_two["method"]["steps_done"] == 2 * rows[0]["steps"]
    )
    # Epoch 2 on 1 process is epoch 2 on 2: the same weights, head and ABRL state at the end.
    for key in ("model", "method"):
        for k, want in state_two[key].items():
            if torch.is_tensor(want) and want.is_floating_point():
                error = (state[key][k] - want).norm().item()
                assert error <= 1e-3 * want.norm().item() + 1e-6, (k, error)
    for k in ("loss", "val_ce", "penalty", "train_top1", "val_top1", "test_top1", "test_loss"):
        assert rows[1][k] == pytest.approx(rows_two[1][k], rel=1e-4, abs=1e-6), k


# --- torchrun's environment --------------------------------------------------------------------

FULL = {
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "h",
    "MASTER_PORT": "29500",
}


def test_environment_of_one_process_and_of_a_worker():
    assert distributed.env_from({}) is None
    assert distributed.env_from({"MASTER_ADDR": "h", "MASTER_PORT": "1"}) is None
    assert distributed.env_from(FULL) == distributed.DistEnv(rank=1, world_size=2, local_rank=1)


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"WORLD_SIZE": None}, ["WORLD_SIZE is not set"]),
        ({"MASTER_ADDR": None, "MASTER_PORT": None}, ["MASTER_ADDR is not", "MASTER_PORT is not"]),
        ({"RANK": "2"}, ["RANK=2, expected 0 <= RANK < WORLD_SIZE=2"]),
        ({"RANK": "one"}, ["RANK='one' is not an integer"]),
        ({"WORLD_SIZE": "0", "RANK": "0", "LOCAL_RANK": "0"}, ["WORLD_SIZE=0"]),
        ({"LOCAL_RANK": "3", "RANK": "1"}, ["LOCAL_RANK=3"]),
        ({"LOCAL_WORLD_SIZE": "1"}, ["LOCAL_WORLD_SIZE=1"]),
        ({"MASTER_PORT": "70000"}, ["MASTER_PORT=70000"]),
    ],
)
def test_partial_or_inconsistent_environment_is_one_clear_error(change, fragments):
    env = {k: v for k, v in {**FULL, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        distributed.env_from(env)
    message = str(err.value)
    assert "\n" not in message and "torchrun --nproc-per-node" in message
    for fragment in fragments:
        assert fragment in message


def test_cli_refuses_a_partial_environment(tmp_path, monkeypatch):
    for k in FULL:
        monkeypatch.delenv(k, raising=False)
    result = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "run"), "--limit", "20"], env={"RANK": "0"}
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: torchrun environment: WORLD_SIZE is not set")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# --- the command line under torchrun (slow: 2 processes start per method) ------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method", ["abrl", "finetune", "joint", "simclr"])
def test_torchrun_trains_each_method_from_the_command_line(tmp_path, method):
    out = tmp_path / "run"
    extra = ["--epochs", "2", "--pretrain-epochs", "1"] if method == "simclr" else ["--epochs", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "abrl_deploy.cli", "train", "--out", str(out), "--method", method, "--limit", "24",
           "--batch-size", "8", "--image-size", "16", "--device", "cpu", *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("run written to") == 1  # one report, from rank 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert {r["processes"] for r in metrics(out)} == {2}
