"""abrl reproduce --executor ray on a real two-node Ray cluster on this machine (loopback only).

A head node and a worker node, each its own raylet process with 1 CPU, started and stopped by the
fixture (Ray's cluster utilities kill only the processes they started). The grid is tiny: digits,
40 images of 8 px, so a cell trains in seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed; pip install 'abrl[cluster]'")

from tiny_preset import write_tiny_preset  # noqa: E402

from abrl_deploy.reproduce import ReproduceSpec  # noqa: E402
from abrl_deploy.reproduce.api import _tables  # noqa: E402
from abrl_deploy.reproduce.executors import run_grid_ray  # noqa: E402
from abrl_deploy.reproduce.plan import plan_grid  # noqa: E402
from abrl_deploy.reproduce.runner import read_curves, run_grid  # noqa: E402

VARIANTS = ("finetune", "abrl", "abrl-no-penalty", "joint")  # 4 cells: both tables' kinds


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node; the driver (this process) joins as a client of the head."""
    from ray.cluster_utils import Cluster

    # Ray's files (sessions, sockets, the current-cluster address) in a short folder of ours:
    # unix socket paths must stay under 108 characters
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # Loopback only: Ray turns a 127.0.0.1 address into this machine's network address unless
    # told it is a single-machine cluster (the flag Ray reads on macOS and Windows); nodes and
    # workers read the variable, this process the constant, which Ray read at import.
    env = {"RAY_DISABLE_USAGE_STATS": "1", "RAY_TMPDIR": temp,
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    patch = pytest.MonkeyPatch()
    patch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
    args = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    c = Cluster()
    try:
        c.add_node(**args)  # the head
        c.add_node(**args)
        c.wait_for_nodes()
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        patch.undo()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cells_of(tmp_path: Path):
    def make(out: Path, **overrides) -> list:
        configs = write_tiny_preset(tmp_path / "configs")
        spec = ReproduceSpec(seeds=(0,), out=out, config_dir=configs,
                             overrides=tuple(overrides.items()))  # fmt: skip
        return [c for c in plan_grid(spec) if c.variant in VARIANTS]

    return make


def _ray_spec(out: Path, **kw) -> ReproduceSpec:
    return ReproduceSpec(seeds=(0,), out=out, executor="ray", cpus_per_run=1, **kw)


_TIMES = {"seconds", "images_per_second", "train_seconds"}


def _untimed(x):
    """``x`` without its wall-clock times, at any depth."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in _TIMES}
    return [_untimed(v) for v in x] if isinstance(x, list | tuple) else x


def _numbers(results) -> list:
    """What the tables and curves are made of: metrics, heads and per-epoch rows, untimed."""
    return [_untimed((r.cell.name, r.metrics, r.head, read_curves(r.cell.run_dir)))
            for r in results]  # fmt: skip


def _diff(a, b, path="") -> list[str]:
    """The paths where two nested records differ, for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")
        ]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: ray {a!r} != local {b!r}"]


def test_ray_grid_equals_the_local_grid(cluster, cells_of, tmp_path):
    """Bit-equal on CPU: the same cells, seeds and torch threads (1: conftest and
    --cpus-per-run 1) give the same tables, whichever process or node trains them."""
    import torch

    assert torch.get_num_threads() == 1  # the local run's threads, as the Ray tasks set theirs
    local = run_grid(cells_of(tmp_path / "local"), force=False)
    ray.init(address=cluster.address)
    events = []
    try:
        grid = run_grid_ray(cells_of(tmp_path / "ray"), _ray_spec(tmp_path / "ray"),
                            lambda c, done, what: events.append((c.name, done, what)))  # fmt: skip
    finally:
        ray.shutdown()
    assert grid.failed == {} and [r.action for r in grid.results] == ["trained"] * 4
    for ours, theirs in zip(_numbers(grid.results), _numbers(local.results), strict=True):
        assert ours == theirs, _diff(ours, theirs)
    spec = ReproduceSpec(seeds=(0,))
    for head in ("refit", "own"):
        assert _tables(spec, grid.results, head) == _tables(spec, local.results, head)
    ran_on = {re.search(r"running on (\S+),", w)[1] for _, _, w in events if "running on" in w}
    assert ran_on == {"127.0.0.1"} and events[-1][1] == 4
    assert not list((tmp_path / "ray").glob(".abrl-grid-*"))  # the shared check cleans up


def _kill_after_first_epoch(run_dir: Path, pids: dict, killed: dict) -> None:
    """SIGKILL the worker training ``run_dir`` once its epoch-1 state.pt exists, before its card."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # metrics.jsonl is written right after state.pt at each epoch's end
        if (run_dir / "metrics.jsonl").is_file() and "victim" in pids:
            if not (run_dir / "card.json").exists():
                killed["rows"] = (run_dir / "metrics.jsonl").read_text()
                os.kill(pids["victim"], signal.SIGKILL)
                killed["pid"] = pids["victim"]
            return
        time.sleep(0.02)


def test_a_killed_worker_is_retried_and_its_cell_resumed(cluster, cells_of, tmp_path):
    """The worker of one cell is killed after its first epoch: Ray retries the task, which finds
    the run partial and resumes it from state.pt (epoch 1), not from scratch; the grid completes.
    Fails with --max-retries 0 (the cell is lost) or when the retry retrains (force)."""
    out = tmp_path / "ray"
    cells = [c for c in cells_of(out, epochs=4) if c.variant in ("finetune", "abrl")]
    victim = next(c for c in cells if c.variant == "abrl")
    pids: dict[str, int] = {}
    killed: dict = {}
    events = []

    def progress(cell, done, what):
        events.append((cell.name, what))
        m = re.search(r"pid (\d+)", what)
        if m and cell == victim:
            pids["victim"] = int(m[1])

    watcher = threading.Thread(target=_kill_after_first_epoch,
                               args=(victim.run_dir, pids, killed), daemon=True)  # fmt: skip
    watcher.start()
    ray.init(address=cluster.address)
    try:
        grid = run_grid_ray(cells, _ray_spec(out), progress)
    finally:
        ray.shutdown()
    watcher.join(5)
    assert "pid" in killed, "the victim finished before it could be killed; raise its epochs"
    assert grid.failed == {}, grid.failed
    result = next(r for r in grid.results if r.cell == victim)
    assert result.action == "resumed" and result.resumed_from_epoch >= 1, result
    curve = read_curves(victim.run_dir)
    assert [row["epoch"] for row in curve] == [1, 2, 3, 4]
    # the epochs trained before the kill are kept as they were (a restart would retime them)
    before = killed["rows"].splitlines()
    assert (victim.run_dir / "metrics.jsonl").read_text().splitlines()[: len(before)] == before
    assert any(n == victim.name and w.startswith("retried (attempt 2)") for n, w in events)


def test_a_cell_no_node_can_hold_is_refused_before_anything_trains(cluster, cells_of, tmp_path):
    """Every node has 1 CPU: a task asking for 2 would wait forever; it is refused in one line
    and no cell starts."""
    from abrl_deploy.errors import ConfigError

    out = tmp_path / "ray"
    cells = cells_of(out)
    ray.init(address=cluster.address)
    try:
        with pytest.raises(ConfigError, match=r"needs 2 CPU\(s\) on one node.*largest node"):
            run_grid_ray(cells, ReproduceSpec(seeds=(0,), out=out, executor="ray", cpus_per_run=2),
                         lambda c, done, what: None)  # fmt: skip
    finally:
        ray.shutdown()
    assert not any(c.run_dir.exists() for c in cells)
