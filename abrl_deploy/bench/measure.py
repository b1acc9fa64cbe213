"""The one measurement routine: bench (the models of one backend) and optimize (the variants of
one model) both measure a set of runners the same way (docs/protocol.md): open each (timed), stage
the timed batch and time the first call apart, score every image set, time them all together in
interleaved blocks, describe where each ran, and warn where the latency varies too much to trust.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abrl_deploy.errors import ConfigError, DependencyError, RuntimeBackendError, first_line
from abrl_deploy.progress import Progress
from abrl_deploy.runtime.base import Runner

from .accuracy import predict_all
from .images import timing_batch
from .protocol import Protocol, Timing, first_call, measure_interleaved, open_timed
from .stats import LatencyStats, latency_stats


@dataclass
class Subject:
    """One runner to measure: ``images`` (in its input layout) give the timed batch; each set
    in ``score`` is predicted in full and its logits kept."""

    label: str
    runner: Runner  # not yet open
    images: np.ndarray
    score: tuple[np.ndarray, ...] = ()


@dataclass
class Measurement:
    """One subject's numbers (keyed by its label where ``measure`` returns them)."""

    timing: Timing
    latency: LatencyStats
    device_latency: LatencyStats | None  # CUDA events, where the runner records them
    logits: list[np.ndarray]  # one array per ``Subject.score`` set
    runner: dict[str, Any]  # Runner.describe(): where it really ran
    warnings: list[str] = field(default_factory=list)


# (subject, the error it raised on open) -> True to leave it out and go on, False to raise
SkipOpenError = Callable[[Subject, Exception], bool]


def measure(
    subjects: list[Subject],
    batch: int,
    protocol: Protocol,
    progress: Progress,
    *,
    what: str = "",
    skip: SkipOpenError | None = None,
) -> dict[str, Measurement]:
    """Measure ``subjects`` together; ``what`` prefixes progress and warnings (e.g. a backend).
    A subject whose runner cannot open is left out when ``skip`` says so."""
    prefix = f"{what}: " if what else ""
    timings, logits, staged, opened = {}, {}, {}, {}
    with contextlib.ExitStack() as stack:
        for s in subjects:
            progress(f"{prefix}loading {s.label}", None)
            try:
                load = open_timed(s.runner)
            except (RuntimeBackendError, DependencyError) as exc:
                if skip is None or not skip(s, exc):
                    raise
                continue
            stack.callback(s.runner.close)
            x = _as_input(s.runner, timing_batch(s.images, batch), batch)
            staged[s.label], first_ms = first_call(s.runner, x)
            timings[s.label] = Timing(load_seconds=load, first_call_ms=first_ms)
            n = sum(len(x) for x in s.score)
            progress(f"{prefix}accuracy of {s.label} on {n} images", None)
            logits[s.label] = [predict_all(s.runner, x, batch) for x in s.score]
            opened[s.label] = s.runner

        def tick(message: str, fraction: float) -> None:
            progress(f"{prefix}timing {len(opened)} together, {message}", fraction)

        measure_interleaved(opened, staged, timings, protocol, tick)
        described = {label: r.describe() for label, r in opened.items()}
    return {label: _measurement(label, timings[label], logits[label], described[label], batch,
                                prefix) for label in opened}  # fmt: skip


def _measurement(label, timing: Timing, logits, described, batch: int, prefix: str) -> Measurement:
    stats = latency_stats(timing.samples_ms, batch)
    device = np.asarray(timing.device_ms)
    warnings = []
    if stats.high_variation:
        warnings.append(
            f"{prefix}{label}: latency varies a lot (CV {stats.cv:.0%}); close other programs, "
            "pin --threads, or raise --min-seconds"
        )
    return Measurement(timing, stats, latency_stats(device, batch) if len(device) > 1
                       else None, logits, described, warnings)  # fmt: skip


def _as_input(runner: Runner, x: np.ndarray, batch: int) -> np.ndarray:
    """The timed batch in the model's input dtype; a model abrl cannot feed is one line."""
    shape, dtype = runner.input_spec.shape, runner.input_spec.dtype
    if dtype.kind != "f":
        raise ConfigError(
            f"the model's input is {dtype}; abrl feeds normalised float images, so it measures "
            "float32/float16 inputs only"
        )
    if isinstance(shape[0], int) and shape[0] != batch:
        raise ConfigError(
            f"the model's input has a fixed batch of {shape[0]}; run with --batch {shape[0]}"
        )
    return x.astype(dtype, copy=False)


def skip_and_record(skipped: list[dict[str, str]], keep: str) -> SkipOpenError:
    """Leave out a subject that cannot open (recording why), except ``keep``, which must run."""

    def skip(s: Subject, exc: Exception) -> bool:
        if s.label == keep:
            return False
        skipped.append({"candidate": s.label, "reason": first_line(exc)})
        return True

    return skip
