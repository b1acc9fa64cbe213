"""Run-directory I/O: safetensors weights, the card, resumable state. Every write is atomic."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from abrl_deploy.artifacts import CARD, CONFIG, DERIVED_FILES, METRICS, RUN_FILES, STATE, WEIGHTS
from abrl_deploy.atomic import atomic_write_bytes, atomic_write_text
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import RunDirError, first_line

from .config import TrainConfig, load_config
from .models import Classifier, build_classifier


def prepare_run_dir(out: Path, *, force: bool, resume: bool) -> None:
    """Create ``out``; refuse to reuse a non-empty one unless resuming or --force."""
    if resume:
        if not (out / STATE).is_file():
            raise RunDirError(
                f"cannot resume: {out / STATE} does not exist; start without --resume"
            )
        return
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RunDirError(
                f"run directory {out} is not empty; pass --force to overwrite it "
                "or --resume to continue"
            )
        # only our own files (never what the user put there), and the exports of the old weights
        for name in RUN_FILES + DERIVED_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def save_state(out: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out / STATE, buf.getvalue())


def load_state(out: Path) -> dict[str, Any]:
    # weights_only: a state file is user-supplied input on resume; never unpickle it freely.
    try:
        return torch.load(out / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = first_line(exc, 200)
        raise RunDirError(f"cannot resume from {out / STATE}: {first}") from None


def save_weights(model: Classifier, out: Path) -> str:
    """Write model.safetensors; returns its SHA-256 (recorded in the card)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"format": "pt"})
    atomic_write_bytes(out / WEIGHTS, data)
    return hashlib.sha256(data).hexdigest()


def save_config(cfg: TrainConfig, out: Path) -> None:
    atomic_write_text(out / CONFIG, cfg.to_yaml())


def load_run_config(out: Path) -> TrainConfig:
    return load_config(out / CONFIG)


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the history held in state, so a resumed run never duplicates."""
    atomic_write_text(out / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def load_classifier(run_dir: str | Path) -> tuple[Classifier, ModelCard]:
    """The trained model and its card from a finished run directory, in eval mode on the CPU."""
    run_dir = Path(run_dir)
    missing = [n for n in (WEIGHTS, CARD) if not (run_dir / n).is_file()]
    if missing:
        raise RunDirError(
            f"{run_dir} is not a finished run directory: {', '.join(missing)} missing; "
            "train with abrl train --out DIR (or finish it with --resume)"
        )
    from safetensors.torch import load

    card = ModelCard.load(run_dir / CARD)
    data = (run_dir / WEIGHTS).read_bytes()
    if card.checkpoint_sha256 and hashlib.sha256(data).hexdigest() != card.checkpoint_sha256:
        raise RunDirError(
            f"{run_dir / WEIGHTS} does not match card.json's checkpoint_sha256; "
            "the weights were changed or belong to another run"
        )
    model = build_classifier(
        card.backbone, card.num_classes, stem=card.config.get("stem", "imagenet")
    )
    try:
        model.load_state_dict(load(data))
    except Exception as exc:  # a corrupt file or other shapes: one line, not a traceback
        raise RunDirError(f"cannot load {run_dir / WEIGHTS}: {str(exc).splitlines()[0]}") from None
    return model.eval(), card
