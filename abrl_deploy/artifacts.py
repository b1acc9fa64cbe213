"""The names of the files abrl writes, and the two rules every writer follows: an engine's card
is its ``<engine>.json`` sidecar, and nothing existing is overwritten without ``--force``.

Torch-free; the one place these names are spelled.
"""

from __future__ import annotations

from pathlib import Path

from abrl_deploy.errors import ConfigError

# A run directory, as abrl train writes it.
WEIGHTS = "model.safetensors"
CARD = "card.json"  # also in each Triton model directory
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
STATE = "state.pt"  # optimizer and progress, for --resume
RUN_FILES = (WEIGHTS, CARD, CONFIG, METRICS, STATE)

# What abrl export and abrl optimize add to it.
ONNX = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
TRITON_REPO = "triton"
DEPLOY = "model.deploy.onnx"
OPTIMIZE_REPORTS = {"json": "optimize.json", "markdown": "optimize.md", "plot": "optimize.png"}
# Made from a run's weights: stale once the run is trained again (abrl train --force removes them,
# so that abrl bench RUN never times an old model.onnx beside new weights).
DERIVED_FILES = (*ONNX.values(), ENGINE, ENGINE + ".json", DEPLOY, *OPTIMIZE_REPORTS.values())


def sidecar(engine: Path) -> Path:
    """Where an engine's model card lives: ``<engine>.json`` beside it."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def refuse_overwrite(paths: list[Path | None], force: bool) -> None:
    """ConfigError naming every path that exists, unless ``force``."""
    existing = [str(p) for p in paths if p is not None and Path(p).exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} exists; pass --force to overwrite it")
