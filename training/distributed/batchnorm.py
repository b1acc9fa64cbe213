"""BatchNorm over the rows of every rank: torch's SyncBatchNorm on CUDA, our own on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .collectives import all_reduce_sum
from .environment import is_distributed


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
        # Statistics in fp32 under bf16 autocast (as torch's BatchNorm keeps them); the output
        # returns in the input's dtype.
        dtype, x = x.dtype, x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
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
        return y.to(dtype)

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
