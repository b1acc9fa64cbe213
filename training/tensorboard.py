"""``abrl train --tensorboard DIR``: the scalars of metrics.jsonl as TensorBoard events.

metrics.jsonl stays the source of truth; this is a view of the same rows, one run per folder
(``DIR/<run folder name>``), one point per epoch. A resumed run purges the events of epochs it
replays, so a kill and resume leaves one curve, not two.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError, RunDirError

_SPLITS = ("train", "val", "test")


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of one metrics row under TensorBoard tags (``val/top1``, ``train/ce``);
    nested dicts are flattened one level (``abrl/...``), the epoch number is the step."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "epoch":
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                _add(out, f"{key}/{sub}", v)
            continue
        split, _, rest = key.partition("_")
        _add(out, f"{split}/{rest}" if split in _SPLITS and rest else f"train/{key}", value)
    return out


def _add(out: dict[str, float], tag: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if math.isfinite(value):
        out[tag] = float(value)


class TensorBoardLog:
    def __init__(self, folder: Path, first_epoch: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package; pip install 'abrl[tensorboard]'"
            ) from None
        self.folder = folder
        # purge_step drops events at or after the first epoch this process writes (resume)
        self.writer = SummaryWriter(str(folder), purge_step=first_epoch + 1)

    @classmethod
    def open(cls, root: str, run_dir: Path, *, force: bool, resume: bool, epoch: int):
        folder = Path(root) / Path(run_dir).resolve().name
        if folder.exists() and not resume:
            if not force:
                raise RunDirError(
                    f"--tensorboard: {folder} already holds another run's events; "
                    "pass --force to replace them or choose another --tensorboard folder"
                )
            shutil.rmtree(folder)
        return cls(folder, epoch)

    def write(self, row: dict[str, Any]) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
