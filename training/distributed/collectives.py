"""Collectives that carry gradients (row gathers, sums), gradient averaging, broadcasts, and
rank-0-only file work (``on_main``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from abrl_deploy.errors import AbrlError

from .environment import is_distributed, is_main, rank, world_size

T = TypeVar("T")


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        start = dist.get_rank() * x.shape[0]
        ctx.rows = slice(start, start + x.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Every rank's loss depends on this rank's rows: add the gradients all ranks send back.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def gather_rows(x: Tensor) -> Tensor:
    """The rows of every rank, in rank order (``[R * n, ...]``); identity for one process.

    Gradients flow back to each rank's own rows, summed over the ranks that used them. Every rank
    must call it with the same shape (the trainer's batches are equal by construction).
    """
    return _GatherRows.apply(x) if is_distributed() else x


def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum over ranks of ``x`` on every rank; gradients are summed back the same way."""
    return _AllReduceSum.apply(x) if is_distributed() else x


def rank_rows(n_local: int) -> slice:
    """Which rows of :func:`gather_rows`'s output are this rank's own."""
    return slice(rank() * n_local, (rank() + 1) * n_local)


# --- plain collectives -------------------------------------------------------------------------


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """All-reduce the gradients of ``params`` to their mean over ranks, one flat buffer per dtype.

    The trainer calls this after ``method.step()`` instead of wrapping the model in
    DistributedDataParallel: DDP synchronises only what runs through its own ``forward``, while
    the methods call ``forward_features``/``forward_head`` and leave parameters unused by phase
    (ABRL's head, SimCLR's projector or head), and ABRL's fused surrogate is built on gathered
    rows. One explicit all-reduce after backward gives the same gradients for every method; it
    does not overlap communication with the backward pass as DDP's buckets do.
    """
    if not is_distributed():
        return
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        if p.grad is not None:  # the same on every rank: every rank runs the same step
            groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def sum_floats(values: list[float]) -> list[float]:
    """Element-wise sum over ranks of a list of numbers (counts, loss sums)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_from_main(tensors: Iterable[Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values."""
    if is_distributed():
        for t in tensors:
            dist.broadcast(t.data, src=0)


class _MainFailed(RuntimeError):
    pass


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only (run-directory I/O) and hand its result, or its error, to all.

    Every rank returns the same value or raises the same AbrlError, so no rank waits forever for
    one that failed. The other ranks wait until rank 0 is done: it doubles as a barrier.
    """
    if not is_distributed():
        return fn()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            payload[0] = ("ok", fn())
        except AbrlError as exc:
            payload[0] = ("error", exc)
        except BaseException as exc:  # still tell the others, then fail here with the original
            payload[0], error = ("crash", f"{type(exc).__name__}: {exc}"), exc
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if error is not None:
        raise error
    if kind == "error":
        raise value
    if kind == "crash":
        raise _MainFailed(f"rank 0 failed: {value}")
    return value
