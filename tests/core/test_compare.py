"""The one comparator: batching (with and without padding) and the agreement numbers, against
values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from abrl_deploy.compare import agreement, cosines, run_batches


def _recording_model(shapes: list[tuple[int, ...]]):
    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        shapes.append(x.shape)
        flat = x.reshape(len(x), -1)
        return {"logits": flat * 2.0, "features": flat.sum(1, keepdims=True)}

    return infer


def test_batches_cover_every_row_once_and_padding_is_dropped():
    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    seen: list[tuple[int, ...]] = []
    out = run_batches(_recording_model(seen), x, 3)
    assert seen == [(3, 3), (3, 3), (1, 3)]
    np.testing.assert_array_equal(out["logits"], x * 2)
    np.testing.assert_array_equal(out["features"][:, 0], x.sum(1))
    seen.clear()
    padded = run_batches(_recording_model(seen), x, 3, pad=True, dtype=np.float16)
    assert seen == [(3, 3), (3, 3), (3, 3)]  # only the built shape
    assert padded["logits"].shape == (7, 3) and padded["logits"].dtype == np.float16
    np.testing.assert_array_equal(padded["logits"], (x * 2).astype(np.float16))


def test_agreement_numbers_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    got = np.array([[1.0, 0.1], [0.5, 2.0], [4.0, 3.0]])
    a = agreement(got, ref)
    assert a["top1_flip_rate"] == pytest.approx(1 / 3)  # the last row's argmax flips
    assert a["max_abs_diff"] == pytest.approx(1.0)
    assert a["mean_abs_diff"] == pytest.approx((0.1 + 0.5 + 1 + 1) / 6)
    assert a["min_cosine"] == pytest.approx(24 / 25)  # (12 + 12) / (5 * 5)
    assert cosines(np.zeros((1, 2)), np.ones((1, 2)))[0] == 0.0
