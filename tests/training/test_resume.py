"""A run killed mid-training (a real SIGKILL of a subprocess) and resumed ends with the same
weights as an uninterrupted run on CPU, without re-running the epochs it had finished.

Same weights alone prove little: every epoch is re-seeded from (seed, epoch), so a "resume" that
ignored state.pt and retrained from scratch would end with the same weights too. What tells them
apart: the resumed process trains only the unfinished epochs (it prints no line for epoch 1), and
the finished epochs' records are the killed run's own (their measured seconds are kept).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

ARGS = ["--method", "abrl", "--epochs", "3", "--limit", "48", "--batch-size", "8",
        "--image-size", "16", "--device", "cpu", "--quiet"]  # fmt: skip


def abrl(*args: str, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "abrl_deploy.cli", "train", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def wait_for(path, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    victim = abrl("--out", str(killed), *ARGS)
    wait_for(killed / "state.pt", timeout=300)  # the first epoch is checkpointed...
    time.sleep(0.5)  # ...and the second is under way
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (killed / "model.safetensors").exists()
    done = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert done and len(done) < 3
    reference = abrl("--out", str(full), *ARGS)
    resumed = abrl("--out", str(killed), "--resume")  # not quiet: it prints each epoch it trains
    outputs = []
    for proc in (reference, resumed):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out.decode()
        outputs.append(out.decode())
    trained = [int(w.split()[1].rstrip(":")) for w in outputs[1].splitlines()
               if w.startswith("epoch ") and ": loss" in w]  # fmt: skip
    assert trained == list(range(len(done) + 1, 4)), outputs[1]
    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after resume"
    rows = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[: len(done)] == done  # the finished epochs' own records, seconds included


def test_resume_refuses_new_options_and_missing_state(tmp_path):
    proc = abrl("--out", str(tmp_path), "--resume", "--epochs", "9")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"drop epochs" in out
    proc = abrl("--out", str(tmp_path / "none"), "--resume")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"state.pt does not exist" in out


def test_a_damaged_state_is_one_line_not_a_traceback(tmp_path):
    """state.pt is read back: a foreign or damaged one names what is wrong (issue 20)."""
    import torch

    from abrl_deploy.errors import RunDirError
    from abrl_deploy.training import TrainConfig, train

    cfg = TrainConfig(method="finetune", epochs=1, limit=40, batch_size=8, image_size=8,
                      device="cpu", data_cache="off")  # fmt: skip
    out = tmp_path / "run"
    train(cfg, out, quiet=True)
    good = torch.load(out / "state.pt", weights_only=True)
    wrong_shape = {**good["model"], "head.weight": torch.zeros(3, 3)}
    damaged = [({**good, "epoch": "x"}, "its epoch is 'x'"),
               ({**good, "epoch": 99}, "its epoch is 99, expected an integer from 0 to 1"),
               ({k: v for k, v in good.items() if k != "optimizer"}, "KeyError: 'optimizer'"),
               ({**good, "model": wrong_shape}, "does not fit this run (RuntimeError")]  # fmt: skip
    for state, says in damaged:
        torch.save(state, out / "state.pt")
        with pytest.raises(RunDirError, match=says.replace("(", r"\(")) as err:
            train(None, out, resume=True, quiet=True)
        assert "\n" not in str(err.value) and "--force" in str(err.value)
