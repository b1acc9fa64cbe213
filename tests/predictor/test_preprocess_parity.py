"""The torch-free preprocessing equals training's torchvision eval transform, and the Predictor on
raw test images reproduces the accuracy training measured. Skipped where torch is absent."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity with training needs torch")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from abrl_deploy.card import ModelCard  # noqa: E402
from abrl_deploy.cli import app  # noqa: E402
from abrl_deploy.predictor import Predictor  # noqa: E402
from abrl_deploy.preprocess import Preprocessor  # noqa: E402


@pytest.mark.parametrize(
    ("size", "resize_ratio", "shape"),
    [(32, 1.0, (8, 8)), (32, 1.0, (37, 50)), (24, 256 / 224, (61, 43)), (16, 1.0, (10, 16))],
)
def test_preprocessor_equals_torchvision_eval_transform(size, resize_ratio, shape):
    from dataclasses import replace

    from abrl_deploy.training.data import get_dataset_spec
    from abrl_deploy.training.data.transforms import describe_eval, eval_transform

    spec = replace(get_dataset_spec("imagefolder"), resize_ratio=resize_ratio)
    ev = describe_eval(spec, size)
    card = ModelCard(method="finetune", backbone="resnet18", num_classes=2, class_names=("a", "b"),
                     input_size=size, mean=spec.mean, std=spec.std,
                     preprocessing={"eval": ev})  # fmt: skip
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        img = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        want = eval_transform(spec, size)(img).numpy()
        got = Preprocessor(card).pil(img)
        assert got.shape == (3, size, size)
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "model.onnx"
    r = CliRunner().invoke(app, ["export", str(trained_run), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_predictor_on_raw_test_images_matches_training_accuracy(trained_run, exported):
    """uint8 pixels of the test split, as a service would get them: same top-1 as training's
    own evaluation, and logits equal to PyTorch's through torchvision's transform."""
    from abrl_deploy.training.checkpoint import load_classifier
    from abrl_deploy.training.data import load_dataset

    model, card = load_classifier(trained_run)
    splits = load_dataset(card.dataset, image_size=card.input_size, limit=card.config["limit"],
                          seed=card.seed, val_fraction=card.config["val_fraction"])  # fmt: skip
    test = splits.test
    pixels = np.stack([np.asarray(test.source.image(int(i))) for i in test.indices])
    labels = test.labels
    with Predictor(exported) as p:
        logits = p.logits(pixels)
        top1 = p.predict(pixels, top_k=1)
    with torch.no_grad():
        ref = model(torch.stack([test[i][0] for i in range(len(test))])).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-3)
    accuracy = 100 * np.mean([r.class_ids[0] for r in top1] == labels)
    assert accuracy == pytest.approx(card.metrics["test_top1"], abs=1e-9)
