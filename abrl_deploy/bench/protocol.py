"""One timing protocol for every backend.

Per runner: open (timed apart as ``load_seconds``), stage the input (untimed), one first call
(timed apart: lazy initialisation and engine builds land here), then warm-up. The runners of one
backend are then timed together in interleaved blocks — one block of each model per round, the
order reversed every other round — so that drift on a noisy machine hits every model alike,
until each has ``min_iters`` calls and ``min_seconds`` of measured time. A block is ``block``
calls of the slowest model; a faster model's block has proportionally more calls (from its
warm-up times), so every model reaches ``min_seconds`` in about the same rounds. One
sample is ``time.perf_counter_ns`` around one ``run_staged`` call: host input in, host outputs
out, synchronised.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abrl_deploy.progress import Progress
from abrl_deploy.runtime.base import Runner

from .spec import Protocol  # noqa: F401  (the spec lives with BenchSpec; imported from here too)


@dataclass
class Timing:
    """What one runner measured; ``blocks`` is (rounds, block) in milliseconds."""

    load_seconds: float
    first_call_ms: float
    blocks: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    device_ms: list[float] = field(default_factory=list)

    @property
    def samples_ms(self) -> np.ndarray:
        return self.blocks.ravel()


def open_timed(runner: Runner) -> float:
    """Open ``runner``; seconds taken (session creation, engine deserialisation, model load)."""
    t0 = time.perf_counter()
    runner.open()
    return time.perf_counter() - t0


def first_call(runner: Runner, batch: np.ndarray) -> tuple[Any, float]:
    """Stage ``batch`` (untimed) and time the first call apart from the samples: lazy
    initialisation, ``torch.compile`` and the TensorRT EP's engine build land here."""
    staged = runner.stage(batch)
    t0 = time.perf_counter_ns()
    runner.run_staged(staged)
    return staged, (time.perf_counter_ns() - t0) / 1e6


def measure_interleaved(
    runners: dict[str, Runner],
    staged: dict[str, Any],
    timings: dict[str, Timing],
    protocol: Protocol,
    progress: Progress | None = None,
    *,
    scale_blocks: bool = True,
) -> None:
    """Warm up, then time every open runner in interleaved blocks; fills ``timings[label]``.
    ``scale_blocks=False`` keeps every block at ``protocol.block`` calls (training steps: one
    slow first step must not give a variant up to 100× the calls)."""
    labels = list(runners)
    sizes = _block_sizes(runners, staged, protocol)
    if not scale_blocks:
        sizes = dict.fromkeys(labels, protocol.block)
    rounds: dict[str, list[list[float]]] = {label: [] for label in labels}
    spent = dict.fromkeys(labels, 0.0)
    min_rounds = max(protocol.min_blocks, math.ceil(protocol.min_iters / protocol.block))
    done_rounds = 0
    # One block of each model per round keeps the blocks paired for the bootstrap; every model
    # must reach min_seconds of measured time (the README's and --help's promise).
    while done_rounds < min_rounds or min(spent.values()) < protocol.min_seconds:
        order = labels if done_rounds % 2 == 0 else labels[::-1]
        for label in order:
            runner, x, block = runners[label], staged[label], []
            for _ in range(sizes[label]):
                t0 = time.perf_counter_ns()
                runner.run_staged(x)
                block.append((time.perf_counter_ns() - t0) / 1e6)
                device = getattr(runner, "last_device_ms", None)
                if device is not None:
                    timings[label].device_ms.append(device)
            rounds[label].append(block)
            spent[label] += sum(block) / 1000
        done_rounds += 1
        if progress is not None:
            by_rounds = done_rounds / min_rounds
            by_time = min(spent.values()) / protocol.min_seconds if protocol.min_seconds else 1
            progress(f"{done_rounds} rounds", min(1.0, min(by_rounds, by_time)))
    for label in labels:
        timings[label].blocks = np.asarray(rounds[label], dtype=np.float64)


# A model far faster than the slowest gets at most this many times the calls per block.
MAX_BLOCK_SCALE = 100


def _block_sizes(runners: dict[str, Runner], staged: dict[str, Any], protocol: Protocol):
    """Warm up every runner, timing the warm-up calls, and give each model a block of
    ``block × (slowest median / its median)`` calls (at least ``block``)."""
    median_ms = {}
    for label, runner in runners.items():
        times = []
        for _ in range(max(protocol.warmup, 1)):  # at least one call to estimate from
            t0 = time.perf_counter_ns()
            runner.run_staged(staged[label])
            times.append((time.perf_counter_ns() - t0) / 1e6)
        median_ms[label] = max(float(np.median(times)), 1e-6)
    slowest = max(median_ms.values())
    scale = {k: min(MAX_BLOCK_SCALE, max(1, int(slowest / v))) for k, v in median_ms.items()}
    return {label: protocol.block * scale[label] for label in runners}
