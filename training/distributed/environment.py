"""The process group from torchrun's environment, and who this process is (rank, world,
device)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from abrl_deploy.errors import ConfigError

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
