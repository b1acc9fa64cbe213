"""The one measurement routine bench and optimize share: every subject scored and timed together,
a runner that cannot open is skipped only when the caller says so, and a latency too spread to
trust comes with a warning (optimize's report lacked it before the routine was shared)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from test_protocol import Recorder

from abrl_deploy.bench.measure import Subject, measure, skip_and_record
from abrl_deploy.bench.protocol import Protocol
from abrl_deploy.errors import RuntimeBackendError
from abrl_deploy.progress import quiet

PROTOCOL = Protocol(warmup=1, min_iters=12, min_seconds=0.0, block=2, min_blocks=6)


class Erratic(Recorder):
    """1 ms, then 30 ms, in turn: a coefficient of variation far above the warning's threshold."""

    def __init__(self, name, log):
        super().__init__(name, 0.0, log)
        self.pauses = itertools.cycle((0.001, 0.03))

    def infer_impl(self, staged):
        time.sleep(next(self.pauses))
        return {"logits": staged}


class Broken(Recorder):
    def open_impl(self):
        raise RuntimeBackendError("cannot load: no such op")


def _subject(label, runner):
    images = np.ones((6, 2), np.float32)
    return Subject(label, runner, images, (images, images[:3]))


def test_every_subject_is_scored_on_each_set_and_a_spread_latency_is_warned_about():
    log: list[str] = []
    out = measure([_subject("steady", Recorder("steady", 0.002, log)),
                   _subject("erratic", Erratic("erratic", log))], 2, PROTOCOL, quiet,
                  what="ort-cpu")  # fmt: skip
    assert [len(x) for x in out["steady"].logits] == [6, 3]  # every set predicted in full
    assert out["steady"].timing.blocks.shape[0] == out["erratic"].timing.blocks.shape[0] == 6
    assert out["steady"].warnings == []
    assert (
        len(out["erratic"].warnings) == 1
        and "ort-cpu: erratic: latency varies a lot" in (out["erratic"].warnings[0])
    )


def test_a_runner_that_cannot_open_is_skipped_only_when_asked_and_never_the_reference():
    log: list[str] = []
    with pytest.raises(RuntimeBackendError):
        measure([_subject("a", Recorder("a", 0.001, log)), _subject("b", Broken("b", 0, log))],
                2, PROTOCOL, quiet)  # fmt: skip
    skipped: list[dict[str, str]] = []
    out = measure([_subject("a", Recorder("a", 0.001, log)), _subject("b", Broken("b", 0, log))],
                  2, PROTOCOL, quiet, skip=skip_and_record(skipped, keep="a"))  # fmt: skip
    assert list(out) == ["a"] and skipped == [
        {"candidate": "b", "reason": "cannot load: no such op"}
    ]
    with pytest.raises(RuntimeBackendError):
        measure([_subject("b", Broken("b", 0, log))], 2, PROTOCOL, quiet,
                skip=skip_and_record([], keep="b"))  # fmt: skip
