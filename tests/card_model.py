"""Tiny ONNX classifiers built torch-free with onnx.helper, for the runtime, bench, predictor and
serve tests: a third-party-style CNN without a card (``write_cnn``: any width, NCHW or NHWC,
fixed or dynamic shapes) and the same CNN as ``abrl export`` would write it, with an embedded
abrl card and optionally a ``features`` output (``write_card_model``).

    write_card_model(tmp_path / "model.onnx", features=True)

Where ``onnx`` is not installed (``make test-runtime``: the runtime extra alone, to prove that
serving never needs it) the files are built by ``$ABRL_FIXTURE_PYTHON``, an interpreter that has
onnx (the Makefile passes the main environment's).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from abrl_deploy.card import ModelCard

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the runtime-only environment: exactly abrl[runtime] and pytest
    onnx = None

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WIDTH = 8  # channels of both convs in write_card_model, and the length of `features`


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


def cnn_model(
    *, width: int, size: int | str = 16, layout: str = "NCHW", batch: int | str = "N",
    classes: int = 10, seed: int = 0, output: str = "scores", features: bool = False,
) -> onnx.ModelProto:  # fmt: skip
    """conv3x3(3->w) relu conv3x3(w->w) relu global-avg-pool [-> `features`] gemm -> ``output``.

    The input `images` is [batch,3,size,size] (NCHW) or [batch,size,size,3] (NHWC, transposed
    inside the graph, so both layouts give the same scores for the same weights).
    """
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        scale = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)  # fmt: skip

    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes, x = [], "images"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["features"]),
        helper.make_node("Gemm", ["features", "wf", "bf"], [output], transB=1),
    ]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, classes])]
    if features:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, width]))
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        outputs,
        [init("w1", width, 3, 3, 3), init("b1", width), init("w2", width, width, 3, 3),
         init("b2", width), init("wf", classes, width), init("bf", classes)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the extras allow
    return model


def _elsewhere(function: str, path: str | Path, kw: dict) -> Path:
    """Run ``function(path, **kw)`` of this module in $ABRL_FIXTURE_PYTHON (which has onnx)."""
    python = os.environ.get("ABRL_FIXTURE_PYTHON")
    if not python:
        raise RuntimeError("onnx is not installed and ABRL_FIXTURE_PYTHON is not set")
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import card_model; card_model.{function}({str(path)!r}, **json.loads(sys.argv[1]))"
    )
    subprocess.run([python, "-c", code, json.dumps(kw)], check=True)  # fmt: skip
    return Path(path)


def _save(model: onnx.ModelProto, path: str | Path) -> Path:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return Path(path)


def write_cnn(path: str | Path, *, width: int, **kw) -> Path:
    """A third-party-style classifier without an abrl card; output `scores`."""
    if onnx is None:
        return _elsewhere("write_cnn", path, {"width": width, **kw})
    return _save(cnn_model(width=width, **kw), path)


def write_card_model(
    path: str | Path, *, features: bool = False, size: int = 16, classes: int = 10, seed: int = 0,
    props: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """What ``abrl export`` writes, in miniature: input `images` [N,3,size,size] float32, outputs
    `logits` [N,classes] and, with ``features=True``, `features` [N,8]; the card embedded, or
    ``props`` as the metadata instead (``{}``: no card; a damaged card's JSON)."""
    if onnx is None:
        kw = {"features": features, "size": size, "classes": classes, "seed": seed}
        return _elsewhere("write_card_model", path, {**kw, "props": props})
    model = cnn_model(width=WIDTH, size=size, classes=classes, seed=seed, output="logits",
                      features=features)  # fmt: skip
    if props is None:
        card = card_for(size, classes)
        props = (card if features else card.replace(feature_dim=None)).to_onnx_metadata()
    helper.set_model_props(model, props)
    return _save(model, path)
