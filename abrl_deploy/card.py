"""The model card: one torch-free description of a model that travels with every artifact.

``abrl train`` writes it as ``card.json``; export embeds it in ONNX ``metadata_props`` (key
``abrl.card``); bench and the Predictor read it so that preprocessing is identical everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abrl_deploy import fields
from abrl_deploy.atomic import atomic_write_text
from abrl_deploy.errors import AbrlError

CARD_SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "abrl.card"


@dataclass(frozen=True)
class ModelCard:
    """What a service needs to run a model correctly, and where the model came from."""

    method: str
    backbone: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    feature_dim: int | None = None
    dataset: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    data_splits: dict[str, int] = field(default_factory=dict)
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    checkpoint_sha256: str | None = None
    export: dict[str, Any] = field(default_factory=dict)
    # How training ran on its machine: precision and why, memory format, device, CPU, data cache
    training: dict[str, Any] = field(default_factory=dict)
    # What abrl optimize chose on the machine it ran on: backend, precision, speed, accuracy
    deploy: dict[str, Any] = field(default_factory=dict)
    schema_version: int = CARD_SCHEMA_VERSION
    # Fields of a newer abrl: kept (written back) and ignored
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if len(self.class_names) != self.num_classes:
            problems.append(
                f"class_names has {len(self.class_names)} entries, "
                f"num_classes is {self.num_classes}"
            )
        if self.layout not in ("NCHW", "NHWC"):
            problems.append(f"layout is {self.layout!r}, expected 'NCHW' or 'NHWC'")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append(f"mean/std must be 3 values with std > 0, got {self.mean}/{self.std}")
        if problems:
            raise AbrlError("invalid model card: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for optional in ("deploy", "training"):  # cards without them stay readable by abrl
            if not data[optional]:  # versions that predate the field
                del data[optional]
        extra = data.pop("extra")
        return {**extra, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """A card from JSON data, every field checked against its type and bounds (one line
        naming the field and what was expected). Fields this abrl does not know (a newer abrl
        wrote them) are kept under ``extra``, written back by ``to_dict`` and otherwise ignored."""
        if not isinstance(data, dict):
            raise AbrlError(f"model card must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if isinstance(data.get("extra"), dict):  # a card this abrl wrote with extras
            extra = {**data["extra"], **{k: v for k, v in extra.items() if k != "extra"}}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name in known and f.name not in values
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]  # fmt: skip
        if missing:
            raise AbrlError(f"model card is missing {', '.join(missing)}: a card of abrl train "
                            "or abrl bench --save-card has them")  # fmt: skip
        problem = fields.problem(_FIELD_RULES, values, prefix="model card field ")
        if problem:
            raise AbrlError(problem)
        for name in ("class_names", "mean", "std"):
            values[name] = tuple(values[name])
        return cls(**values, extra=extra)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise AbrlError(f"model card is not valid JSON: {exc}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if not path.is_file():
            raise AbrlError(
                f"no model card at {path}; expected the card.json that abrl train writes"
            )
        return cls.from_json(path.read_text())

    def to_onnx_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries that carry this card inside an ONNX file."""
        return {ONNX_METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_onnx_metadata(cls, props: dict[str, str]) -> ModelCard | None:
        """The card embedded by ``to_onnx_metadata``, or None for a third-party model."""
        text = props.get(ONNX_METADATA_KEY)
        return None if text is None else cls.from_json(text)

    @classmethod
    def from_onnx_file(cls, path: str | Path) -> ModelCard | None:
        """The card embedded in the ONNX file at ``path`` (needs the ``onnx`` package)."""
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return cls.from_onnx_metadata({p.key: p.value for p in model.metadata_props})

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)


# Each field's type and bounds as read from JSON (lists stand for tuples). Checked here, where a
# card is read, so a damaged or foreign card is one line naming the field, never a traceback.
_FIELD_RULES: dict[str, fields.Rule] = {
    "method": fields.text(),
    "backbone": fields.text(),
    "num_classes": fields.integer(1, 10**6),
    "class_names": fields.texts(),
    "input_size": fields.integer(1, 16384),
    "mean": fields.numbers(3),
    "std": fields.numbers(3),
    "layout": fields.one_of(("NCHW", "NHWC")),
    "feature_dim": fields.integer(1, 10**6, null=True),
    "dataset": fields.text(null=True),
    "preprocessing": fields.obj(),
    "data_splits": fields.obj(fields.integer(0, 10**12, words="non-negative integers")),
    "seed": fields.integer(-(2**63), 2**64, null=True, words="an integer"),
    "config": fields.obj(),
    "metrics": fields.obj(),
    "head": fields.obj(),
    "versions": fields.obj(),
    "checkpoint_sha256": fields.text(null=True),
    "export": fields.obj(),
    "training": fields.obj(),
    "deploy": fields.obj(),  # its own rules: deploy_record.py
    "schema_version": fields.integer(0, 10**6, words="a non-negative integer"),
}
