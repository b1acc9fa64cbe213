"""Where a grid's cells train: here, one after another (runner.run_grid), or as Ray tasks.

On Ray every cell is one task that calls ``run_cell``, the code of ``abrl train``, so a cell
trains, resumes or is reused exactly as locally. Fault tolerance is Ray's and resume's together:
a task whose worker process or node dies is retried by Ray (``max_retries``, system failures
only), and the retry finds the run "partial" and resumes from its last state.pt. A cell that
fails on its own (bad data, divergence) is not retried: it is reported with its one-line error
and the others go on. Unlike the local executor, which stops the grid on an exception that is
not an AbrlError (a bug, with its traceback in the terminal), a Ray task reports every exception
of its cell as that cell's failure: the traceback is in the worker's log, and the cells on
other nodes keep their work.

Every node reads and writes the run folders directly, so ``--out`` must be storage that every
node mounts at the same path; the driver checks that before the first task (``_check_shared``).
Ray is imported here only, and only for ``--executor ray``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.errors import ConfigError, DependencyError, first_line

from .plan import Cell, ReproduceSpec
from .runner import CellResult, GridRun, build_config, check_cell, run_cell, run_grid

CellProgress = Callable[[Cell, int, str], None]  # (cell, cells done, what happened)
_PROBE_SECONDS = 120.0


def run_cells(cells: list[Cell], spec: ReproduceSpec, progress: CellProgress | None) -> GridRun:
    """The grid on ``spec.executor``; a report-only grid trains nothing, so it never needs Ray."""
    if spec.executor == "local" or spec.report_only:
        return run_grid(cells, force=spec.force, train=not spec.report_only, progress=progress)
    return run_grid_ray(cells, spec, progress or (lambda cell, done, what: None))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DependencyError(
            "--executor ray needs Ray, which is not installed; pip install 'abrl[cluster]'"
        ) from None
    return ray


def run_grid_ray(cells: list[Cell], spec: ReproduceSpec, progress: CellProgress) -> GridRun:
    """Every cell not finished yet as one Ray task; returns when all are done or failed."""
    ray = _import_ray()
    states = [check_cell(c, force=spec.force) for c in cells]  # a grid-level mistake: no task
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=spec.ray_address, log_to_driver=False)
    # this grid's folder under --out: the storage check's token, the preset files the tasks read
    shared = spec.out.resolve() / f".abrl-grid-{secrets.token_hex(4)}"
    try:
        _check_shared(ray, shared)
        remote = _remote_cells(cells, shared)
        back = {c.name: c for c in cells}  # the plan's own cells, for the caller and the report

        def on_cell(cell: Cell, done: int, what: str) -> None:
            progress(back[cell.name], done, what)

        grid = _Grid(ray, remote, states, spec, shared / "token", on_cell)
        try:
            done = grid.run()
        except BaseException:  # Ctrl-C or an error here: no task may go on training unseen
            for ref in grid.pending:
                ray.cancel(ref, force=True)
            raise
        results = [dataclasses.replace(r, cell=back[r.cell.name]) for r in done.results]
        return GridRun(results, done.failed)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        if connected_here:
            ray.shutdown()


def _remote_cells(cells: list[Cell], shared: Path) -> list[Cell]:
    """The cells as a worker must see them: absolute run folders (a worker's working directory
    is not the driver's) and preset files copied into the shared folder (a node may not have
    the driver's configs/)."""
    (shared / "configs").mkdir(exist_ok=True)
    out = []
    for cell in cells:
        copy = shared / "configs" / f"{cell.dataset}-{cell.config_file.name}"
        if not copy.is_file():
            atomic_write_text(copy, cell.config_file.read_text())
        out.append(dataclasses.replace(cell, run_dir=cell.run_dir.resolve(), config_file=copy))
    return out


# ---- the shared-storage check ---------------------------------------------------------------


def _probe(folder: str, node: str) -> str | None:
    """On one node: read the driver's token in ``folder`` and answer beside it; None if fine."""
    token = Path(folder) / "token"
    try:
        if token.read_text() != token.parent.name:
            return f"{token} holds another grid's token"
        atomic_write_text(Path(folder) / f"node-{node}", node)
    except OSError as exc:
        return f"{type(exc).__name__}: {first_line(exc, 160)}"
    return None


def _check_shared(ray: Any, folder: Path) -> None:
    """Every alive node must see the driver's ``folder`` under --out (not a node-local folder of
    the same name) and write there; collects every node that cannot before refusing."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out = folder.parent
    folder.mkdir(parents=True)
    atomic_write_text(folder / "token", folder.name)
    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {
        nid: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)
        ).remote(str(folder), nid)
        for nid in nodes
    }
    try:
        answers = dict(zip(refs, ray.get(list(refs.values()), timeout=_PROBE_SECONDS), strict=True))
    except ray.exceptions.GetTimeoutError:
        for ref in refs.values():
            ray.cancel(ref, force=True)
        raise ConfigError(
            f"the nodes of the Ray cluster did not answer the check of --out {out} within "
            f"{_PROBE_SECONDS:.0f} s; check that every node is healthy (ray status)"
        ) from None
    for nid, why in answers.items():
        if why is None and not (folder / f"node-{nid}").is_file():
            answers[nid] = "its file did not appear on the driver's side"
    bad = [f"node {nodes[nid]} ({why})" for nid, why in answers.items() if why]
    if bad:
        raise ConfigError(
            f"--out {out} is not storage every Ray node shares: {'; '.join(bad)}; "
            "give an --out on a file system every node mounts at the same path (NFS, Lustre, "
            "a shared PVC)"
        )


# ---- the task -------------------------------------------------------------------------------


def _cell_task(cell: Cell, token: str, threads: int, events: Any) -> dict[str, Any]:
    """One cell on a Ray worker: the same torch threads as --cpus-per-run, then ``run_cell``.

    A cell's own failure comes back as an error string (no retry); a dead worker or node never
    returns, and Ray retries the task, which then finds the run partial and resumes it.
    """
    import ray
    import torch

    # Ray's worker otherwise keeps the thread count of whichever task it ran first.
    torch.set_num_threads(threads)
    node = ray.util.get_node_ip_address()
    events.push.remote(cell.name, node, os.getpid())
    try:
        if not Path(token).is_file():  # a node that joined after the driver's storage check
            raise ConfigError(
                f"node {node} cannot see {token}: --out must be storage every node mounts at "
                "the same path"
            )
        return {"node": node, "result": run_cell(cell, force=False)}
    except Exception as exc:  # the cell's own failure: one line to the driver, the others go on
        import traceback

        traceback.print_exc()  # into the worker's log (Ray's session logs) for the details
        return {"node": node, "error": f"{type(exc).__name__}: {first_line(exc)}"}


class _Events:
    """A Ray actor on the driver's node: the tasks say where and when they start, so the driver
    can show running and retried cells (an attempt that starts twice was retried)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int]] = []

    def push(self, name: str, node: str, pid: int) -> None:
        self.items.append((name, node, pid))

    def drain(self) -> list[tuple[str, str, int]]:
        items, self.items = self.items, []
        return items


class _Grid:
    """The driver's loop: submit the unfinished cells, show their progress, collect results."""

    def __init__(self, ray, cells, states, spec: ReproduceSpec, token: Path, progress) -> None:
        self.ray, self.cells, self.spec, self.token = ray, cells, spec, token
        self.states, self.progress = states, progress
        self.results: dict[int, CellResult] = {}
        self.failed: dict[str, str] = {}
        self.starts: dict[str, int] = {}  # cell name -> attempts started
        self.nodes: dict[str, str] = {}  # cell name -> the node of its last attempt
        self.done = 0
        self.index = {c.name: i for i, c in enumerate(cells)}  # cell name -> its place

    def run(self) -> GridRun:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.events = ray.remote(num_cpus=0)(_Events).options(scheduling_strategy=here).remote()
        self.pending: list[Any] = []  # _submit fills it; cancelled if the driver stops early
        self._submit()
        while self.pending:
            ready, self.pending = ray.wait(self.pending, num_returns=1, timeout=0.5)
            self._show_starts()
            for ref in ready:
                self._collect(self.refs[ref], ref)
        order = sorted(self.results)
        return GridRun([self.results[i] for i in order], self.failed)

    def _submit(self) -> None:
        task = self.ray.remote(_cell_task)
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        gpu = any(r.get("GPU", 0) > 0 for r in nodes)
        self.refs: dict[Any, int] = {}
        cuda = {}
        for i, (cell, state) in enumerate(zip(self.cells, self.states, strict=True)):
            # check_cell refused card-only runs: a cell is finished or has training to do, and
            # every task must fit on some node before any starts
            if state != "finished":
                device = build_config(cell).device
                cuda[i] = device.startswith("cuda") or (device == "auto" and gpu)
                self._check_fits(cell, cuda[i], nodes)
        for i, cell in enumerate(self.cells):
            if i not in cuda:  # finished: nothing to train, no task
                self._finish(i, run_cell(cell, force=False, state="finished"), "reused")
                continue
            if self.spec.force:  # the first attempt starts over; a retry must find its state.pt
                shutil.rmtree(cell.run_dir, ignore_errors=True)
            options = {"num_cpus": self.spec.cpus_per_run, "num_gpus": 1 if cuda[i] else 0,
                       "max_retries": self.spec.max_retries, "retry_exceptions": False,
                       "name": cell.name}  # fmt: skip
            ref = task.options(**options).remote(
                cell, str(self.token), self.spec.cpus_per_run, self.events
            )
            self.refs[ref] = i
            self.pending.append(ref)

    def _check_fits(self, cell: Cell, cuda: bool, nodes: list[dict[str, float]]) -> None:
        """A task no node can hold would wait forever: refuse it before anything is submitted."""
        need = {"CPU": self.spec.cpus_per_run, "GPU": 1 if cuda else 0}
        if not any(all(r.get(k, 0) >= v for k, v in need.items()) for r in nodes):
            largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
            raise ConfigError(
                f"{cell.name} needs {need['CPU']} CPU(s){' and 1 GPU' if cuda else ''} on one "
                f"node, and the largest node of this Ray cluster has {largest[0]:g} CPU(s) and "
                f"{largest[1]:g} GPU(s); lower --cpus-per-run, or set device: cpu for a cluster "
                "without GPUs"
            )

    def _show_starts(self) -> None:
        for name, node, pid in self.ray.get(self.events.drain.remote()):
            i = self.index[name]
            if i in self.results or name in self.failed:
                continue  # a late message of an attempt that is already collected
            self.starts[name] = n = self.starts.get(name, 0) + 1
            self.nodes[name] = node
            what = f"running on {node}, pid {pid}" if n == 1 else (
                f"retried (attempt {n}) on {node}, pid {pid}")  # fmt: skip
            self.progress(self.cells[i], self.done, f"{what}{self._counts()}")

    def _collect(self, i: int, ref: Any) -> None:
        ray, cell = self.ray, self.cells[i]
        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as exc:  # retries spent, or the task could not run
            died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
            spent = f" ({self.spec.max_retries} retries spent)" if isinstance(exc, died) else ""
            error = f"{type(exc).__name__}: {first_line(exc)}{spent}"
            out = {"node": self.nodes.get(cell.name, "?"), "error": error}
        if "error" in out:
            self.failed[cell.name] = out["error"]
            self.done += 1
            self.progress(cell, self.done, f"failed on {out['node']}: {out['error']}"
                          f"{self._counts()}")  # fmt: skip
        else:
            result = out["result"]
            self._finish(i, result, f"{result.action} on {out['node']}")

    def _finish(self, i: int, result: CellResult, what: str) -> None:
        self.results[i] = result
        self.done += 1
        self.progress(self.cells[i], self.done, f"{what}{self._counts()}")

    def _counts(self) -> str:
        finished = set(self.failed) | {self.cells[i].name for i in self.results}
        running = sum(1 for name in self.starts if name not in finished)
        retried = sum(1 for n in self.starts.values() if n > 1)
        return f" · {running} running, {retried} retried, {len(self.failed)} failed"
