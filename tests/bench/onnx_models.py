"""Third-party-style ONNX classifiers built with onnx.helper (no abrl card): a CNN of a chosen
width, NCHW or NHWC, for 10 classes — e.g. a narrow model and its much slower wide twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_cnn(path: Path, *, width: int, size: int = 16, layout: str = "NCHW",
              batch: int | str = "N", classes: int = 10, seed: int = 0) -> Path:  # fmt: skip
    """conv3x3(3->w) relu conv3x3(w->w) relu global-avg-pool gemm(w->classes)."""
    rng = np.random.default_rng(seed)

    def init(name, *shape):
        return numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name
        )

    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes = []
    x = "images"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["scores"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])],
        [init("w1", width, 3, 3, 3), init("b1", width), init("w2", width, width, 3, 3),
         init("b2", width), init("wf", classes, width), init("bf", classes)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
