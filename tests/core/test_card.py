import json

import pytest

from abrl_deploy.card import CARD_SCHEMA_VERSION, ModelCard
from abrl_deploy.errors import AbrlError


def make_card(**changes):
    values = dict(
        method="abrl", backbone="resnet18", num_classes=3, class_names=("a", "b", "c"),
        input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        preprocessing={"eval": {"resize": 32, "crop": 32}}, metrics={"test_top1": 90.0},
    )  # fmt: skip
    values.update(changes)
    return ModelCard(**values)


def test_json_round_trip(tmp_path):
    card = make_card()
    card.save(tmp_path / "card.json")
    assert ModelCard.load(tmp_path / "card.json") == card
    assert json.loads((tmp_path / "card.json").read_text())["schema_version"] == CARD_SCHEMA_VERSION


def test_onnx_metadata_round_trip():
    card = make_card()
    props = card.to_onnx_metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert ModelCard.from_onnx_metadata(props) == card
    assert ModelCard.from_onnx_metadata({"other": "x"}) is None


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"class_names": ("a", "b")}, "class_names has 2"),
        ({"layout": "CHW"}, "layout"),
        ({"std": (0.0, 1.0, 1.0)}, "std > 0"),
    ],
)
def test_invalid_card_is_rejected(changes, fragment):
    with pytest.raises(AbrlError, match=fragment):
        make_card(**changes)


def test_newer_schema_and_unknown_fields_are_refused():
    data = make_card().to_dict()
    with pytest.raises(AbrlError, match="newer"):
        ModelCard.from_dict({**data, "schema_version": CARD_SCHEMA_VERSION + 1})
    with pytest.raises(AbrlError, match="unknown fields"):
        ModelCard.from_dict({**data, "surprise": 1})


def test_missing_card_names_the_path(tmp_path):
    with pytest.raises(AbrlError, match=str(tmp_path / "card.json")):
        ModelCard.load(tmp_path / "card.json")


def test_only_a_card_with_a_deploy_record_carries_the_field():
    """Cards without abrl optimize's record stay readable by abrl versions before the field."""
    from card_model import card_for

    card = card_for()
    assert "deploy" not in card.to_dict()
    shipped = card.replace(deploy={"choice": {"backend": "ov-cpu"}})
    assert ModelCard.from_json(shipped.to_json()) == shipped
    assert ModelCard.from_json(card.to_json()) == card
