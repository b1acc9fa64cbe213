"""Markers: gpu and tensorrt tests are skipped, with a reason, where hardware or library lack."""

from __future__ import annotations

import importlib.util
import os

import pytest

# One intra-op thread for torch in the tests (and the processes they start): on a machine whose
# 2 cores are shared with other jobs, OpenMP's spinning threads thrash. Measured for the shared
# trained_run fixture beside one busy job: 157 s with 2 threads, 49 s with 1. Timing belongs in
# benchmarks/, which use every core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

pytest_plugins = ["run_fixtures"]  # trained_run / run_dir, shared by export and bench tests


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is visible here")
    skip_trt = pytest.mark.skip(
        reason="needs TensorRT and a CUDA device; pip install 'abrl[gpu]' on an NVIDIA machine"
    )
    has_cuda = (
        _has_cuda()
        if any("gpu" in i.keywords or "tensorrt" in i.keywords for i in items)
        else False
    )
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "tensorrt" in item.keywords and not (has_cuda and has_trt):
            item.add_marker(skip_trt)
