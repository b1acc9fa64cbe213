"""Several processes (torchrun): the process group from torchrun's environment, rank helpers,
row gathers that carry gradients, gradient averaging, a SyncBatchNorm that runs on the CPU, and
rank-0-only file work.

The conventions that make N processes compute what one process computes on the combined batch
(docs/method.md decision 10), checked in tests/training/test_ddp.py:

- ``batch_size`` is the global batch. Rank r takes part r of every global batch that one process
  would draw (``batches.EpochBatchSampler``), so the rows of all ranks at a step are that batch.
- The objective is the mean over ranks of each rank's loss. An op that mixes rows of several ranks
  (:func:`gather_rows`, :func:`all_reduce_sum`, sync BatchNorm) sums, in backward, the gradients
  that every rank sends to a rank's own rows; :func:`average_gradients` then averages parameter
  gradients. For ABRL every rank computes the full-batch loss L on the gathered features, so rank
  r's rows receive R·∂L/∂z_r and the average over ranks is Σ_r ∂L/∂z_r · ∂z_r/∂θ: the gradient of
  one process, not the (biased) average of per-rank hypergradients. A row-wise loss (fine-tuning's
  cross-entropy) needs no gather: the mean of equal-sized per-rank means is the combined mean.

Split by role: ``environment`` (process group, rank, device), ``collectives`` (gathers, sums,
gradient averaging, rank-0 work), ``batchnorm`` (SyncBatchNorm on the CPU). Callers use this
package's names (``distributed.world_size()``); the submodules call each other directly, so a
test that patches ``distributed.world_size`` reaches the trainer, not ``average_gradients``.
"""

from .batchnorm import CpuSyncBatchNorm, convert_sync_batchnorm
from .collectives import (
    all_reduce_sum,
    average_gradients,
    broadcast_from_main,
    gather_rows,
    on_main,
    rank_rows,
    sum_floats,
)
from .environment import (
    DistEnv,
    env_from,
    is_distributed,
    is_initialized,
    is_main,
    local_device,
    process_group,
    rank,
    world_size,
)

__all__ = [
    "CpuSyncBatchNorm", "DistEnv", "all_reduce_sum", "average_gradients", "broadcast_from_main",
    "convert_sync_batchnorm", "env_from", "gather_rows", "is_distributed", "is_initialized",
    "is_main", "local_device", "on_main", "process_group", "rank", "rank_rows", "sum_floats",
    "world_size",
]  # fmt: skip
