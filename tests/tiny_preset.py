"""The tiny preset every reproduce test plans its grid from: 40 digits of 8 px, one epoch of a
few steps, written as ``configs/cpu-small.yaml`` in a test's own folder."""

from __future__ import annotations

from pathlib import Path

TINY = """dataset: digits
backbone: resnet18
epochs: 1
batch_size: 8
val_batch_size: 4
limit: 40
image_size: 8
inner_lr: auto
lambda: 0.01
device: cpu
"""


def write_tiny_preset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu-small.yaml").write_text(TINY)
    return folder
