"""The timing protocol: interleaved schedule, stopping rule, first call kept apart; a model with
an artificially slower twin (a sleep inside a wrapper) gets the verdict it should."""

from __future__ import annotations

import time

import numpy as np
import pytest
from card_model import write_cnn

from abrl_deploy.bench.protocol import Protocol, Timing, first_call, measure_interleaved
from abrl_deploy.bench.stats import ratio_ci, verdict
from abrl_deploy.errors import ConfigError
from abrl_deploy.runtime import InputSpec, OrtRunner, Runner


class Recorder(Runner):
    """Sleeps ``seconds`` per call and logs which runner ran, in order."""

    def __init__(self, name: str, seconds: float, log: list[str], first_extra: float = 0.0):
        super().__init__()
        self.backend, self.seconds, self.log, self.first_extra = name, seconds, log, first_extra

    def open_impl(self) -> None:
        pass

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec("x", (None, 2), np.dtype(np.float32))

    @property
    def output_names(self):
        return ("logits",)

    def infer_impl(self, staged):
        time.sleep(self.seconds + self.first_extra)
        self.first_extra = 0.0
        self.log.append(self.backend)
        return {"logits": staged}


def _run(runners, protocol, batch=None):
    batch = np.zeros((4, 2), np.float32) if batch is None else batch
    staged, timings = {}, {}
    for label, r in runners.items():
        r.open()
        staged[label], first = first_call(r, batch)
        timings[label] = Timing(0.0, first)
    measure_interleaved(runners, staged, timings, protocol)
    return timings


def test_interleaved_blocks_alternate_order_and_meet_the_minimums():
    log: list[str] = []
    # equal, non-zero call times: both get the base block (a zero-time call's ratio is noise)
    runners = {"a": Recorder("a", 0.003, log), "b": Recorder("b", 0.003, log)}
    protocol = Protocol(warmup=2, min_iters=12, min_seconds=0.0, block=3, min_blocks=4)
    timings = _run(runners, protocol)
    timed = log[2 + 2 * 2 :]  # after the two first calls and the warm-up (equal speeds: block 3)
    rounds = [timed[i : i + 6] for i in range(0, len(timed), 6)]
    assert len(rounds) == 4  # max(min_blocks=4, ceil(12 / 3))
    assert rounds[0] == ["a"] * 3 + ["b"] * 3 and rounds[1] == ["b"] * 3 + ["a"] * 3
    assert timings["a"].blocks.shape == (4, 3) and timings["b"].samples_ms.size == 12


def test_min_seconds_extends_the_run():
    log: list[str] = []
    runners = {"a": Recorder("a", 0.01, log)}
    protocol = Protocol(warmup=0, min_iters=2, min_seconds=0.3, block=2, min_blocks=3)
    t = _run(runners, protocol)["a"]
    # past the 3 blocks of 2 that min_blocks alone asks for (a count, not a timing: a busy
    # machine's 10 ms sleeps last longer, so fewer than 30 calls may fill the 0.3 s)
    assert t.samples_ms.sum() >= 300 and t.samples_ms.size > 3 * 2
    assert t.samples_ms.min() >= 10  # each sample is one call of >= 10 ms


def test_min_seconds_holds_for_every_model_not_only_the_slowest():
    """A 20 ms and a 1 ms model with --min-seconds 0.4: the fast one used to stop at about
    0.02 s of measured time (the slow model's call count); now each has 0.4 s."""
    log: list[str] = []
    runners = {"slow": Recorder("slow", 0.02, log), "fast": Recorder("fast", 0.001, log)}
    protocol = Protocol(warmup=2, min_iters=4, min_seconds=0.4, block=2, min_blocks=3)
    t = _run(runners, protocol)
    for label in runners:
        assert t[label].samples_ms.sum() >= 400, label
    # still paired: one block of each model per round, the fast model's block longer
    assert t["slow"].blocks.shape[0] == t["fast"].blocks.shape[0]
    assert t["fast"].blocks.shape[1] > t["slow"].blocks.shape[1]


def test_first_call_is_timed_apart_from_the_samples():
    log: list[str] = []
    runners = {"a": Recorder("a", 0.001, log, first_extra=0.2)}
    t = _run(runners, Protocol(warmup=0, min_iters=10, min_seconds=0, block=5, min_blocks=3))["a"]
    assert t.first_call_ms >= 200  # the 200 ms of the first call is in none of the samples
    assert t.first_call_ms > np.median(t.samples_ms) + 150


def test_protocol_rejects_bad_settings():
    with pytest.raises(ConfigError, match="--min-iters 1"):
        Protocol(min_iters=1)


class SlowerTwin(OrtRunner):
    """The same ONNX model with a sleep added inside every call."""

    def __init__(self, path, extra_seconds):
        super().__init__(path, "ort-cpu", threads=1)
        self.extra = extra_seconds

    def infer_impl(self, staged):
        time.sleep(self.extra)
        return super().infer_impl(staged)


@pytest.mark.parametrize(("model_sleep", "expected"), [(0.012, "REFUTED"), (0.0, "SUPPORTED")])
def test_slower_twin_gets_the_right_verdict(tmp_path, model_sleep, expected):
    """The baseline is the model's twin with 6 ms of sleep in every call: a model with no sleep
    is far more than 15% faster (SUPPORTED), one with 12 ms is slower (REFUTED)."""
    onnx = write_cnn(tmp_path / "m.onnx", width=8)
    runners = {"model": SlowerTwin(onnx, model_sleep), "baseline": SlowerTwin(onnx, 0.006)}
    batch = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    timings = _run(runners, Protocol(warmup=2, min_iters=40, min_seconds=0, block=4), batch)
    for statistic in ("p50", "p90"):
        ci = ratio_ci(timings["model"].blocks, timings["baseline"].blocks, statistic)
        assert verdict(ci.low, ci.high, 0.15) == expected, ci
