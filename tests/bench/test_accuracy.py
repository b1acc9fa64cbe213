"""Top-1/top-5 and agreement on hand-made logits; padding of the last batch."""

import numpy as np
import pytest
from test_protocol import Recorder

from abrl_deploy.bench.accuracy import accuracy, predict_all
from abrl_deploy.compare import agreement


def test_accuracy_top1_top5_by_hand():
    logits = np.tile(np.arange(7.0), (4, 1))  # ranking 6,5,4,3,2,1,0 for every row
    labels = np.array([6, 2, 1, 0])  # top-1 hit, top-5 hit, top-5 miss, miss
    assert accuracy(logits, labels) == {"images": 4, "top1": 25.0, "top5": 50.0}
    assert accuracy(logits[:, :5], labels.clip(0, 4))["top5"] is None  # trivial with 5 classes


def test_agreement_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    other = np.array([[2.0, 0.0], [1.0, 0.0]])  # row 0 same direction; row 1 flipped
    a = agreement(other, ref)
    assert a["top1_flip_rate"] == 0.5 and a["max_abs_diff"] == 1.0
    assert a["min_cosine"] == pytest.approx(0.0) and a["mean_cosine"] == pytest.approx(0.5)


def test_predict_all_sends_only_full_batches():
    log: list[str] = []

    class FixedBatch(Recorder):
        def infer_impl(self, staged):
            assert staged.shape[0] == 4, staged.shape  # fixed-batch models see only this
            return {"logits": staged}

    images = np.arange(20, dtype=np.float32).reshape(10, 2)
    with FixedBatch("fixed", 0.0, log) as runner:
        out = predict_all(runner, images, batch=4)
    np.testing.assert_array_equal(out, images)  # the padding rows are dropped
