"""The refusal of ONNX Runtime's silent provider fallback, on a real session (issue 12, item 7).

onnxruntime-gpu lists CUDAExecutionProvider on a machine without a usable GPU; asked for it, a
session then runs on the CPU with only a log line. Here the CPU build is made to *list* CUDA
(the one thing faked); the session, its fallback and the runner's check are real.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest
from card_model import write_card_model

from abrl_deploy.errors import RuntimeBackendError
from abrl_deploy.runtime.backends import make_runner

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is really listed here"
)


@pytest.fixture
def lists_cuda(monkeypatch):
    listed = ["CUDAExecutionProvider", *ort.get_available_providers()]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)


def test_a_session_that_fell_back_to_the_cpu_is_refused(tmp_path, lists_cuda):
    model = write_card_model(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider",
                                                           "CPUExecutionProvider"])  # fmt: skip
    assert session.get_providers()[0] == "CPUExecutionProvider"  # ONNX Runtime fell back, quietly
    with pytest.raises(RuntimeBackendError, match="refusing a silent fallback"):
        make_runner("ort-cuda", model).open()


def test_the_predictor_moves_on_and_says_why(tmp_path, lists_cuda):
    from abrl_deploy import Predictor

    model = write_card_model(tmp_path / "model.onnx")
    with Predictor(model, backend="auto") as p:
        assert p.backend == "ort-cpu"
        assert any("ort-cuda" in s and "silent fallback" in s for s in p.skipped), p.skipped
    with pytest.raises(RuntimeBackendError, match="silent fallback"):
        Predictor(model, backend="ort-cuda")


def test_a_runner_made_directly_takes_its_backends_providers_and_refuses_another_name(tmp_path):
    from abrl_deploy.runtime.backends import TABLE
    from abrl_deploy.runtime.onnxruntime import OrtRunner

    model = write_card_model(tmp_path / "model.onnx")
    for name in ("ort-cpu", "ort-cuda", "ort-trt"):
        assert OrtRunner(model, name).providers == TABLE[name].providers
    for name in ("ov-cpu", "cuda"):
        with pytest.raises(RuntimeBackendError, match="not an ONNX Runtime backend"):
            OrtRunner(model, name)
