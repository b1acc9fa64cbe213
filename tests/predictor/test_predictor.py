"""The torch-free Predictor and `abrl predict`: every input kind, every bad input, batching,
threads, backends. Runs in the main environment and in the runtime-only one (no torch)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from card_model import write_card_model
from PIL import Image
from typer.testing import CliRunner

from abrl_deploy import Predictor
from abrl_deploy.cli import app
from abrl_deploy.errors import ConfigError, InputError, RuntimeBackendError
from abrl_deploy.preprocess import Preprocessor


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_card_model(tmp_path_factory.mktemp("m") / "model.onnx", features=True)


@pytest.fixture(scope="module")
def predictor(model):
    with Predictor(model, backend="ort-cpu") as p:
        yield p


@pytest.fixture(scope="module")
def pixels():
    """Six uint8 RGB images of different sizes' worth: here all 20x24 (H x W)."""
    return np.random.default_rng(0).integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)


def test_every_input_kind_gives_the_same_logits(predictor, pixels, tmp_path):
    want = predictor.logits(pixels)  # uint8 [N,H,W,3]
    assert want.shape == (6, 10) and want.dtype == np.float32
    paths = []
    for i, px in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(px).save(paths[-1])
    pil = [Image.fromarray(px) for px in pixels]
    pre = Preprocessor(predictor.card)(pixels)
    kinds = {
        "paths": [str(p) for p in paths],
        "Path objects": paths,
        "PIL": pil,
        "uint8 HWC list": list(pixels),
        "float NCHW": pre,
        "float CHW list": list(pre),
        "mixed": [str(paths[0]), pil[1], pixels[2], pre[3], pixels[4:6]],
    }
    for name, images in kinds.items():
        np.testing.assert_allclose(predictor.logits(images), want, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(predictor.logits(pixels[0]), want[:1], atol=1e-6)
    np.testing.assert_allclose(predictor.logits(pil[2]), want[2:3], atol=1e-6)
    grey = Image.fromarray(pixels[0, :, :, 0])  # L mode: converted to RGB like training
    rgb = Image.fromarray(np.repeat(pixels[0, :, :, :1], 3, axis=2))
    np.testing.assert_allclose(predictor.logits(grey), predictor.logits(rgb), atol=1e-6)


def test_predict_returns_labels_ids_and_probabilities(predictor, pixels):
    logits = predictor.logits(pixels).astype(np.float64)
    results = predictor.predict(pixels, top_k=3)
    assert len(results) == 6
    for row, r in zip(logits, results, strict=True):
        order = np.argsort(-row)[:3]
        probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert r.class_ids == tuple(order)
        assert r.labels == tuple("abcdefghij"[i] for i in order)
        np.testing.assert_allclose(r.probabilities, probs[order], rtol=1e-9)
        assert list(r.probabilities) == sorted(r.probabilities, reverse=True)
    assert len(predictor.predict(pixels[:1], top_k=50)[0].labels) == 10  # clipped to classes
    with pytest.raises(ConfigError, match="top_k 0"):
        predictor.predict(pixels, top_k=0)


def test_embed_returns_the_features_output(predictor, pixels):
    z = predictor.embed(pixels)
    assert z.shape == (6, 8) and np.isfinite(z).all() and (z >= 0).all()  # after a ReLU + pool


def test_embed_without_features_output_says_how_to_export(tmp_path, pixels):
    with Predictor(write_card_model(tmp_path / "m.onnx"), backend="ort-cpu") as p:
        with pytest.raises(ConfigError, match="--outputs logits,features"):
            p.embed(pixels)


def test_large_inputs_are_split_into_batches(model):
    x = np.random.default_rng(1).integers(0, 256, (23, 16, 16, 3), dtype=np.uint8)
    with Predictor(model, backend="ort-cpu", batch_size=4) as small:
        calls = []
        real = small._runner.infer
        small._runner.infer = lambda b: calls.append(len(b)) or real(b)
        got = small.logits(x)
    with Predictor(model, backend="ort-cpu") as big:
        want = big.logits(x)
    assert calls == [4, 4, 4, 4, 4, 3]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((16, 16), np.uint8), "uint8 array of shape (16, 16)"),
        (np.zeros((16, 16, 4), np.uint8), "uint8 array of shape (1, 16, 16, 4)"),
        (np.zeros((2, 4, 16, 16), np.float32), "float array of shape (2, 4, 16, 16)"),
        (np.zeros((1, 3, 20, 20), np.float32), "must be preprocessed [N,3,16,16]"),
        (np.zeros((16, 16, 3), np.int64), "dtype int64"),
        (np.full((1, 3, 16, 16), np.nan, np.float32), "NaN or inf"),
        (np.full((3, 16, 16), np.inf, np.float32), "NaN or inf"),
        ([], "empty list"),
        ({"image": 1}, "got dict"),
        ([np.zeros((16, 16, 3), np.uint8), 7], "got int in the list"),
    ],
)
def test_bad_input_is_one_clear_error(predictor, images, message):
    with pytest.raises(InputError) as err:
        predictor.predict(images)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_and_missing_files(predictor, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match=r"cannot read image .*bad.png"):
        predictor.predict(str(bad))
    with pytest.raises(InputError, match=r"image file .*missing.png does not exist"):
        predictor.predict(tmp_path / "missing.png")


def test_eight_threads_at_once_equal_sequential(predictor):
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8) for n in range(1, 17)]
    want = [predictor.logits(b) for b in batches]
    got: dict[int, np.ndarray] = {}
    errors = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(t, len(batches), 8):
                for _ in range(3):
                    got[i] = predictor.logits(batches[i])
                    np.testing.assert_array_equal(got[i], want[i])
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(got) == list(range(len(batches)))


def test_auto_picks_the_best_backend_that_runs_and_says_why(model, monkeypatch):
    import abrl_deploy.predictor as pred

    monkeypatch.setattr(pred, "unavailable_reason",
                        lambda b: None if b == "ort-cpu" else f"no {b} (test)")  # fmt: skip
    with Predictor(model) as p:
        assert p.backend == "ort-cpu"
        assert p.skipped == ["ort-trt: no ort-trt (test)", "ort-cuda: no ort-cuda (test)"]
        assert p.describe()["providers_in_use"] == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeBackendError, match="backend ort-cuda cannot run here"):
        Predictor(model, backend="ort-cuda")


def test_files_that_are_not_exported_models_are_refused(tmp_path, model):
    with pytest.raises(ConfigError, match="not a model file"):
        Predictor(tmp_path)
    with pytest.raises(ConfigError, match="backend 'trt' runs engines"):
        Predictor(model, backend="trt")
    with pytest.raises(ConfigError, match="unknown"):
        Predictor(model, backend="cuda")
    write_card_model(tmp_path / "plain.onnx", props={})
    with pytest.raises(ConfigError, match="has no abrl model card"):
        Predictor(tmp_path / "plain.onnx", backend="ort-cpu")


runner = CliRunner()


def test_abrl_predict_table_and_json(model, pixels, tmp_path, predictor):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels[i]).save(paths[-1])
    want = predictor.predict(paths, top_k=2)
    r = runner.invoke(app, ["predict", str(model), *paths, "--top-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines()]
    assert [row["image"] for row in lines] == paths
    assert [row["labels"] for row in lines] == [list(w.labels) for w in want]
    r = runner.invoke(app, ["predict", str(model), *paths, "--top-k", "2"])
    assert r.exit_code == 0 and f"{want[0].labels[0]} ({want[0].probabilities[0]:.1%})" in r.output
    r = runner.invoke(app, ["predict", str(model), str(tmp_path / "nope.png")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_runtime_environment_has_no_torch():
    """make test-runtime sets ABRL_EXPECT_NO_TORCH: there these tests ran without torch."""
    import importlib.util
    import os

    if os.environ.get("ABRL_EXPECT_NO_TORCH") != "1":
        pytest.skip("only meaningful in the runtime-only environment (make test-runtime)")
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("torchvision") is None
