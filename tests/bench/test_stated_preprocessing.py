"""A model without a card gets exactly the preprocessing its flags state (issue 12, item 1).

The model's class is read from the top row of pixels of channel 0 only, and the images are 32 px
with the class in a 1-pixel border. A hidden resize to 256/224 × 32 = 37 then a centre crop of
32 cuts that row off (chance accuracy); a swapped channel order inverts every prediction. So
each hidden step changes the accuracy, and each stated one can be asked for by a flag.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from abrl_deploy.cli import app

runner = CliRunner()
SIZE = 32
FAST = ["--warmup", "1", "--min-iters", "4", "--min-seconds", "0", "--block", "2", "--quiet",
        "--backend", "ort-cpu", "--batch", "8", "--dataset", "imagefolder"]  # fmt: skip
NORM = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]
BORDER = {0: (0, 0, 255), 1: (255, 0, 0)}  # class 1: red border; class 0: blue border


def _border_model(path):
    """logits = [-m, m], m = mean of the top row of channel 0 of the NCHW input."""
    const = [numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in
             (("starts", [0, 0]), ("ends", [1, 1]), ("axes", [1, 2]))]  # fmt: skip
    nodes = [
        helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["row"]),
        helper.make_node("ReduceMean", ["row"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["m4"], ["m"]),
        helper.make_node("Neg", ["m"], ["neg"]),
        helper.make_node("Concat", ["neg", "m"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "border",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], const,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def border(tmp_path_factory):
    root = tmp_path_factory.mktemp("border")
    for split, n in (("train", 2), ("test", 8)):
        for label, colour in BORDER.items():
            for i in range(n):
                pixels = np.full((SIZE, SIZE, 3), 128, np.uint8)
                pixels[0, :] = pixels[-1, :] = pixels[:, 0] = pixels[:, -1] = colour
                folder = root / "data" / split / f"class_{label}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return {"model": _border_model(root / "border.onnx"), "data": root / "data", "root": root}


def _bench(border, name, *flags):
    out = border["root"] / f"{name}.json"
    r = runner.invoke(app, ["bench", str(border["model"]), *FAST, *NORM, "--data-dir",
                            str(border["data"]), "--report", str(out), *flags])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    return report["models"][0], report["results"][0]["accuracy"]["top1"]


def test_images_at_the_input_size_are_not_resized(border):
    model, top1 = _bench(border, "default")
    assert top1 == 100.0  # the border survived: no hidden resize or crop
    assert model["preprocessing"]["resize"] == SIZE and model["preprocessing"]["crop"] == SIZE
    for fact in ("resize", "crop", "interpolation", "scale", "channel_order", "mean", "layout"):
        assert fact in model["assumed"], fact
    assert "no resize when images have it" in model["assumed"]["resize"]


def test_every_stated_step_can_be_overridden(border):
    model, top1 = _bench(border, "resized", "--resize", "37")  # torchvision's 256/224 recipe
    assert top1 == 50.0 and model["assumed"]["resize"] == "--resize"
    model, top1 = _bench(border, "bgr", "--channel-order", "bgr")
    assert top1 == 0.0 and model["preprocessing"]["channel_order"] == "BGR"
    model, top1 = _bench(border, "raw", "--scale", "1", "--interpolation", "bicubic")
    assert top1 == 100.0 and model["preprocessing"]["scale"] == "1"


def test_bad_preprocessing_flags_are_refused_in_one_line(border):
    bad = (("--scale", "2", "use 1/255"), ("--interpolation", "cubic", "use one of"),
           ("--channel-order", "rbg", "use rgb or bgr"))  # fmt: skip
    for flag, value, says in bad:
        r = runner.invoke(app, ["bench", str(border["model"]), *FAST, *NORM, "--data-dir",
                                str(border["data"]), flag, value])  # fmt: skip
        assert r.exit_code == 2 and says in r.output, r.output


def test_predict_runs_the_model_with_the_saved_card(border):
    from abrl_deploy import Predictor
    from abrl_deploy.errors import ConfigError

    card = border["root"] / "border.card.json"
    _bench(border, "saved", "--save-card", str(card))
    files = sorted((border["data"] / "test").glob("*/*.png"))
    with Predictor(border["model"], backend="ort-cpu", card=card) as p:
        got = [r.class_ids[0] for r in p.predict([str(f) for f in files], top_k=1)]
    assert got == [int(f.parent.name[-1]) for f in files]
    with pytest.raises(ConfigError, match="has no abrl model card"):
        Predictor(border["model"], backend="ort-cpu")
    r = runner.invoke(app, ["predict", str(border["model"]), str(files[0]), "--card", str(card),
                            "--json", "--backend", "ort-cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["class_ids"][0] == int(files[0].parent.name[-1])
    # a --card missing fields or with a wrong type: one line naming the field, exit 1
    broken = border["root"] / "broken.card.json"
    data = json.loads(card.read_text())
    for damage, says in (
        (lambda d: d.pop("method"), "model card is missing method"),
        (lambda d: d.update(input_size="32"), 'input_size is "32"'),
    ):
        bad = dict(data)
        damage(bad)
        broken.write_text(json.dumps(bad))
        r = runner.invoke(app, ["predict", str(border["model"]), str(files[0]), "--card",
                                str(broken), "--backend", "ort-cpu"])  # fmt: skip
        assert r.exit_code == 1 and says in r.output and "Traceback" not in r.output, r.output
