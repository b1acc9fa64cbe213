"""A tiny exported-style ONNX classifier with an embedded abrl card, built torch-free with
onnx.helper: what ``abrl export`` writes, small enough to build in a fixture.

    write_card_model(tmp_path / "model.onnx", features=True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from abrl_deploy.card import ModelCard

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WIDTH = 8  # channels of both convs, and the length of the `features` output


def card_for(size: int = 16, classes: int = 10) -> ModelCard:
    """The card embedded by ``write_card_model``; class names are 'a', 'b', ... ."""
    names = tuple(chr(ord("a") + i) if i < 26 else f"c{i}" for i in range(classes))
    return ModelCard(
        method="finetune", backbone="resnet18", num_classes=classes, class_names=names,
        input_size=size, mean=MEAN, std=STD, dataset="digits",
        feature_dim=WIDTH,
        preprocessing={"eval": {"resize": size, "crop": size, "interpolation": "bilinear",
                                "scale": "1/255", "mean": list(MEAN), "std": list(STD),
                                "layout": "NCHW"}},
    )  # fmt: skip


def write_card_model(
    path: str | Path, *, features: bool = False, size: int = 16, classes: int = 10, seed: int = 0
) -> Path:
    """conv3x3 relu conv3x3 relu global-avg-pool -> `features` [N,8] -> gemm -> `logits`.

    Input `images` [N,3,size,size] float32 (dynamic batch); outputs `logits` [N,classes] and,
    with ``features=True``, `features` [N,8] as a second output.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        scale = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)  # fmt: skip

    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["features"]),
        helper.make_node("Gemm", ["features", "wf", "bf"], ["logits"], transB=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])]
    if features:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", WIDTH]))
    graph = helper.make_graph(
        nodes, "card_cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        outputs,
        [init("w1", WIDTH, 3, 3, 3), init("b1", WIDTH), init("w2", WIDTH, WIDTH, 3, 3),
         init("b2", WIDTH), init("wf", classes, WIDTH), init("bf", classes)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the extras allow
    card = card_for(size, classes)
    if not features:
        card = card.replace(feature_dim=None)
    helper.set_model_props(model, card.to_onnx_metadata())
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
