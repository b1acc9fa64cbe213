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


def test_fields_of_a_newer_abrl_are_kept_and_ignored():
    data = make_card().to_dict()
    newer = {**data, "schema_version": CARD_SCHEMA_VERSION + 1, "surprise": {"a": 1}}
    card = ModelCard.from_dict(newer)
    assert card.extra == {"surprise": {"a": 1}} and card.num_classes == data["num_classes"]
    assert card.to_dict() == newer  # written back as read
    assert ModelCard.from_json(card.to_json()) == card


# A corpus of damaged cards: each is one line naming the field and what was expected.
DAMAGED = [
    (lambda d: d.pop("num_classes"), "missing num_classes"),
    (lambda d: d.pop("mean") and d.pop("std"), "missing mean, std"),
    (lambda d: d.update(num_classes="ten"), 'num_classes is "ten", expected an integer from 1 to'),
    (lambda d: d.update(num_classes=True), "num_classes is true, expected an integer"),
    (lambda d: d.update(num_classes=10**30), "num_classes is 1000000000000000000000000000000,"),
    (lambda d: d.update(input_size=-3), "input_size is -3, expected an integer from 1 to 16,384"),
    (lambda d: d.update(mean={"r": 0.5}), 'mean is {"r": 0.5}, expected 3 numbers'),
    (lambda d: d.update(std=[1, 2]), r"std is \[1, 2\], expected 3 numbers"),
    (lambda d: d.update(class_names="abc"), 'class_names is "abc", expected a list of texts'),
    (lambda d: d.update(head=[1, 2]), r"head is \[1, 2\], expected a JSON object"),
    (lambda d: d.update(data_splits={"train": -1}), "data_splits .* non-negative integers"),
    (lambda d: d.update(layout=None), r"layout is null, expected one of \('NCHW', 'NHWC'\)"),
    (lambda d: d.update(schema_version="1"), 'schema_version is "1"'),
    (lambda d: d.update(feature_dim=1.5), "feature_dim is 1.5, expected an integer .* or null"),
]


@pytest.mark.parametrize("damage, fragment", DAMAGED)
def test_a_damaged_card_is_one_line_naming_the_field(damage, fragment):
    data = make_card().to_dict()
    damage(data)
    with pytest.raises(AbrlError, match=fragment) as err:
        ModelCard.from_dict(data)
    assert "\n" not in str(err.value) and "__init__" not in str(err.value)


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
