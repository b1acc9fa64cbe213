"""What ``abrl bench`` is given: a run directory, an ONNX file (ours with a card, or a third-party
classifier described by flags), or a TensorRT engine with its sidecar — resolved to one record
that knows which artifact serves which backend and which facts were assumed rather than read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abrl_deploy.artifacts import CARD, ENGINE, ONNX, WEIGHTS, sidecar
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, first_line
from abrl_deploy.inspect import describe
from abrl_deploy.preprocess import DEFAULT_STEPS
from abrl_deploy.runtime.backends import TABLE

from .spec import ModelFacts


@dataclass(frozen=True)
class ModelSource:
    label: str
    path: Path
    kind: str  # "run", "onnx" or "engine"
    card: ModelCard
    artifacts: dict[str, Path]  # "run" / "onnx" / "engine" -> path, for each that exists
    assumed: dict[str, str] = field(default_factory=dict)  # fact -> where it came from
    needs_export: bool = False  # a run directory without model.onnx: exported on the fly
    # For an ONNX file or engine: the run directory it was exported from, used only as the
    # PyTorch *reference* for agreement (never as this model's torch row: its weights are FP32).
    reference_run: Path | None = None
    notes: tuple[str, ...] = ()  # facts about this model the user must see (report and terminal)

    def artifact_for(self, backend: str) -> Path | None:
        return self.artifacts.get(TABLE[backend].artifact)

    def missing_reason(self, backend: str) -> str:
        need = TABLE[backend].artifact
        if need == "run" and self.kind != "run":
            return (
                f"{self.label}: the PyTorch backend runs a run directory's checkpoint, not this "
                f"{self.kind} file (a torch row here would time another model); bench the run "
                "directory itself for a PyTorch row"
            )
        hint = {
            "run": "the PyTorch backend needs the run directory written by abrl train",
            "onnx": "needs an ONNX file: abrl export RUN_DIR",
            "engine": "needs a TensorRT engine: abrl export RUN_DIR --format trt",
        }[need]
        return f"{self.label}: {hint}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "path": str(self.path), "kind": self.kind,
            "method": self.card.method, "backbone": self.card.backbone,
            "dataset": self.card.dataset, "num_classes": self.card.num_classes,
            "input_size": self.card.input_size, "layout": self.card.layout,
            "mean": list(self.card.mean), "std": list(self.card.std),
            "preprocessing": self.card.preprocessing.get("eval"),
            "precision": self.card.export.get("precision", "fp32" if self.kind == "run" else None),
            "card": "flags" if self.assumed else "embedded",
            "assumed": self.assumed,
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
            "exported_on_the_fly": self.needs_export and "onnx" in self.artifacts,
            "reference_run": str(self.reference_run) if self.reference_run else None,
            "notes": list(self.notes),
        }  # fmt: skip


def resolve_model(path: str | Path, facts: ModelFacts) -> ModelSource:
    """Read ``path`` (run dir, .onnx or .engine) into a ModelSource; AbrlError if it is none."""
    path = Path(path)
    info = describe(path)
    if info["kind"] == "run":
        card = ModelCard.from_dict(info["card"])
        onnx = path / ONNX["fp32"]
        artifacts = {"run": path}
        if onnx.is_file():
            artifacts["onnx"] = onnx
        if (path / ENGINE).is_file() and sidecar(path / ENGINE).is_file():
            artifacts["engine"] = path / ENGINE
        return ModelSource(path.name, path, "run", _with_dataset(card, facts), artifacts,
                           needs_export=not onnx.is_file())  # fmt: skip
    if info["kind"] == "tensorrt":
        engine = Path(info["path"])
        card = ModelCard.from_dict(info["card"])
        run, notes = _beside_run(engine, card)
        return ModelSource(_label(engine), engine, "engine", _with_dataset(card, facts),
                           {"engine": engine}, reference_run=run, notes=notes)  # fmt: skip
    artifacts = {"onnx": path}
    if info["card"] is not None:
        card = ModelCard.from_dict(info["card"])
        run, notes = _beside_run(path, card)
        return ModelSource(_label(path), path, "onnx", _with_dataset(card, facts), artifacts,
                           reference_run=run, notes=notes)  # fmt: skip
    card, assumed = _card_from_facts(path, info, facts)
    return ModelSource(_label(path), path, "onnx", card, artifacts, assumed)


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _with_dataset(card: ModelCard, facts: ModelFacts) -> ModelCard:
    """A model with a card: flags that contradict it are refused, not silently ignored (flags
    that agree are fine, e.g. when a card-less model is benched beside it)."""
    ev = card.preprocessing.get("eval", {})
    said = {"input_size": card.input_size, "mean": tuple(card.mean), "std": tuple(card.std),
            "layout": card.layout, "dataset": card.dataset,
            "resize": ev.get("resize", card.input_size),
            **{k: ev.get(k, v) for k, v in DEFAULT_STEPS.items()}}  # fmt: skip
    wrong = [f"--{name.replace('_', '-')} {given}" for name, given in vars(facts).items()
             if given is not None and not _same(given, said[name])]  # fmt: skip
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)} contradicts the model card of {card.method} ({card.dataset}, "
            f"{card.input_size} px, mean {card.mean}, std {card.std}, {card.layout}); drop the "
            "flag: it is for models without a card"
        )
    return card


def _same(given, said) -> bool:
    if isinstance(given, tuple):
        return len(given) == len(said) and all(
            abs(a - b) < 1e-6 for a, b in zip(given, said, strict=True)
        )
    return given == said


def _beside_run(artifact: Path, card: ModelCard) -> tuple[Path | None, tuple[str, ...]]:
    """The run directory an artifact was exported into, if its weights are the card's, and a
    note when a card.json is there but cannot be read (the reference is then missing)."""
    run = artifact.parent
    if not (run / CARD).is_file():
        return None, ()
    try:
        run_card = ModelCard.load(run / CARD)
    except Exception as exc:
        return None, (
            f"{run / CARD} beside {artifact.name} cannot be read "
            f"({first_line(exc, 160)}); no PyTorch reference for agreement, which is measured "
            "against the first backend instead",
        )
    same = card.checkpoint_sha256 and run_card.checkpoint_sha256 == card.checkpoint_sha256
    return (run if same and (run / WEIGHTS).is_file() else None), ()


def _card_from_facts(path: Path, info: dict[str, Any], facts: ModelFacts):
    """A card for a third-party ONNX classifier: flags first, then the graph's static shapes."""
    if len(info["inputs"]) != 1:
        names = [i["name"] for i in info["inputs"]]
        raise ConfigError(f"{path} has inputs {names}; abrl bench needs one image input")
    shape = info["inputs"][0]["shape"]
    assumed: dict[str, str] = {}
    problems = []
    if len(shape) != 4:
        raise ConfigError(f"{path}: input shape {shape} is not 4-D (N,C,H,W or N,H,W,C)")
    layout = facts.layout
    channels = {"NCHW": shape[1], "NHWC": shape[3]}
    if layout and isinstance(channels[layout], int) and channels[layout] != 3:
        raise ConfigError(
            f"--layout {layout.lower()}: {path} has input shape {shape}, whose channel axis for "
            f"that layout is {channels[layout]}, not 3; try the other layout"
        )
    if layout:
        assumed["layout"] = "--layout"
    elif shape[1] == 3 and shape[3] != 3:
        layout, assumed["layout"] = "NCHW", "the graph input shape"
    elif shape[3] == 3 and shape[1] != 3:
        layout, assumed["layout"] = "NHWC", "the graph input shape"
    else:
        problems.append("--layout nchw|nhwc (the input shape does not tell)")
    size = facts.input_size
    spatial = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if size:
        assumed["input_size"] = "--input-size"
    elif layout and all(isinstance(d, int) for d in spatial) and spatial[0] == spatial[1]:
        size, assumed["input_size"] = spatial[0], "the graph input shape"
    else:
        problems.append("--input-size N (the input's height/width are not fixed)")
    if facts.mean is None or facts.std is None:
        problems.append("--mean R,G,B and --std R,G,B (no model file records its normalisation)")
    else:
        assumed["mean"] = assumed["std"] = "--mean/--std"
    dataset = facts.dataset or "digits"
    assumed["dataset"] = "--dataset" if facts.dataset else "the default (digits)"
    if problems:
        raise ConfigError(f"{path} has no abrl model card; give " + ", ".join(problems))
    eval_steps = _preprocessing(facts, size, layout, assumed)
    out_shape = info["outputs"][0]["shape"]
    classes = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
    if classes is None:
        raise ConfigError(f"{path}: output shape {out_shape} has no fixed class axis")
    card = ModelCard(
        method="third-party", backbone="unknown", num_classes=classes,
        class_names=tuple(str(i) for i in range(classes)), input_size=size,
        mean=facts.mean, std=facts.std, layout=layout, dataset=dataset,
        preprocessing={"eval": eval_steps},
    )  # fmt: skip
    assumed["num_classes"] = "the graph output shape"
    return card, assumed


# The defaults for a model without a card, and why: no step that changes pixels the model sees
# is applied unless asked for (a resize to 256/224 of the input then a crop cuts the border).
_DEFAULTS = {
    "resize": "the default: shorter side to the input size (no resize when images have it)",
    "crop": "the input size (centre crop)",
    "interpolation": "the default (bilinear)",
    "scale": "the default (pixels / 255)",
    "channel_order": "the default (RGB)",
}


def _preprocessing(facts: ModelFacts, size: int, layout: str, assumed: dict[str, str]):
    """The eval steps for a model without a card, each recorded in ``assumed`` with its source.

    Images are read in the dataset's own files (not through training's transform), resized only
    if asked or if they are not already at the input size, centre-cropped to the input size.
    """
    given = {"resize": facts.resize, "crop": None, "interpolation": facts.interpolation,
             "scale": facts.scale, "channel_order": facts.channel_order}  # fmt: skip
    value = {"resize": size, "crop": size, **DEFAULT_STEPS}
    for name, flag in given.items():
        if flag is not None:
            value[name] = flag
            assumed[name] = f"--{name.replace('_', '-')}"
        else:
            assumed[name] = _DEFAULTS[name]
    return {**value, "mean": list(facts.mean), "std": list(facts.std), "layout": layout}
