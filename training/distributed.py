"""Several processes (torchrun): the process group from torchrun's environment, rank helpers,
row gathers that carry gradients, gradient averaging, a SyncBatchNorm that runs on the CPU, and
rank-0-only file work.

The conventions that make N processes compute what one process computes on the combined batch
(METHOD.md decision 10), checked in tests/training/test_ddp.py:

- ``batch_size`` is the global batch. Rank r takes part r of every global batch that one process
  would draw (``batches.EpochBatchSampler``), so the rows of all ranks at a step are that batch.
- The objective is the mean over ranks of each rank's loss. An op that mixes rows of several ranks
  (:func:`gather_rows`, :func:`all_reduce_sum`, sync BatchNorm) sums, in backward, the gradients
  that every rank sends to a rank's own rows; :func:`average_gradients` then averages parameter
  gradients. For ABRL every rank computes the full-batch loss L on the gathered features, so rank
  r's rows receive R·∂L/∂z_r and the average over ranks is Σ_r ∂L/∂z_r · ∂z_r/∂θ: the gradient of
  one process, not the (biased) average of per-rank hypergradients. A row-wise loss (fine-tuning's
  cross-entropy) needs no gather: the mean of equal-sized per-rank means is the combined mean.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from abrl_deploy.errors import AbrlError, ConfigError

T = TypeVar("T")

# torchrun sets these three for every worker; any of them means "launched as one of several".
# MASTER_ADDR/PORT alone do not: job scripts often export them for the whole allocation.
_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_REQUIRED = (*_RANK_VARS, "MASTER_ADDR", "MASTER_PORT")
_LAUNCH_HINT = (
    "launch with torchrun --nproc-per-node N -m abrl_deploy.cli train ..., or unset RANK, "
    "WORLD_SIZE and LOCAL_RANK to train in one process"
)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands, as torchrun's environment says."""

    rank: int
    world_size: int
    local_rank: int


def env_from(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """Parse torchrun's variables; None when none of RANK, WORLD_SIZE, LOCAL_RANK is set.

    Raises a one-line ConfigError listing every missing or inconsistent value.
    """
    env = os.environ if environ is None else environ
    if not any(k in env for k in _RANK_VARS):
        return None
    problems = [f"{k} is not set" for k in _REQUIRED if not env.get(k)]
    ints: dict[str, int] = {}
    for k in (*_RANK_VARS, "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        if env.get(k):
            try:
                ints[k] = int(env[k])
            except ValueError:
                problems.append(f"{k}={env[k]!r} is not an integer")
    problems += _inconsistencies(ints)
    if problems:
        raise ConfigError(f"torchrun environment: {'; '.join(problems)}; {_LAUNCH_HINT}")
    return DistEnv(ints["RANK"], ints["WORLD_SIZE"], ints["LOCAL_RANK"])


def _inconsistencies(v: dict[str, int]) -> list[str]:
    p = []
    rank, world, local = v.get("RANK"), v.get("WORLD_SIZE"), v.get("LOCAL_RANK")
    if world is not None and world < 1:
        p.append(f"WORLD_SIZE={world}, expected >= 1")
    if rank is not None and (rank < 0 or (world is not None and rank >= world)):
        p.append(f"RANK={rank}, expected 0 <= RANK < WORLD_SIZE={world}")
    if local is not None and (local < 0 or (rank is not None and local > rank)):
        p.append(f"LOCAL_RANK={local}, expected 0 <= LOCAL_RANK <= RANK={rank}")
    local_world = v.get("LOCAL_WORLD_SIZE")
    if local is not None and local_world is not None and local >= local_world:
        p.append(f"LOCAL_RANK={local}, expected < LOCAL_WORLD_SIZE={local_world}")
    port = v.get("MASTER_PORT")
    if port is not None and not 0 < port < 65536:
        p.append(f"MASTER_PORT={port}, expected 1..65535")
    return p


@contextlib.contextmanager
def process_group(environ: Mapping[str, str] | None = None) -> Iterator[DistEnv | None]:
    """Join the process group that torchrun's environment describes, and leave it at the end.

    Nothing happens for one process, or when the caller already initialised a group. Backend:
    gloo for CPU tensors and, where CUDA is available, NCCL for CUDA tensors (one group,
    ``cpu:gloo,cuda:nccl``), so that whatever device the config picks, its tensors travel on the
    right backend, and objects and barriers always go through gloo.
    """
    env = env_from(environ)
    if env is None or env.world_size == 1 or is_initialized():
        yield env
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; train in one process")
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    try:
        yield env
    finally:
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that logs and writes files."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def local_device(device: torch.device) -> torch.device:
    """This process's CUDA device under torchrun: cuda:LOCAL_RANK (cuda:0 if only one is visible,
    e.g. a launcher that sets CUDA_VISIBLE_DEVICES per process)."""
    if device.type != "cuda" or not is_distributed():
        return device
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    index = 0 if count == 1 else local
    if index >= count:
        raise ConfigError(
            f"LOCAL_RANK={local} but this machine shows {count} CUDA devices; start at most "
            f"{count} processes per machine (torchrun --nproc-per-node {count})"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# --- collectives that carry gradients ---------------------------------------------------------


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


# --- data and BatchNorm ------------------------------------------------------------------------


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the rows of all ranks, for CPU tensors (torch's SyncBatchNorm is CUDA-only).

    Two-pass statistics: the global mean, then the global mean of squared deviations, each by an
    all-reduce that sums gradients back, so backward equals BatchNorm on the combined batch.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        totals = all_reduce_sum(torch.cat([x.sum(dims), x.new_full((1,), x.numel() / x.shape[1])]))
        n = totals[-1].detach()
        mean = totals[:-1] / n
        xc = x - mean.view(shape)
        var = all_reduce_sum(xc.pow(2).sum(dims)) / n
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1))
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        f = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean, f)
        self.running_var.lerp_(unbiased_var, f)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer by one that normalises over all ranks' rows.

    torch's SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` elsewhere. Parameters and buffers
    are kept (the same tensors), so state-dict keys and checkpoints do not change.
    """
    if not is_distributed():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module
