import re

import pytest

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.config import TrainConfig, load_config


def test_yaml_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ridge: 1e-3\nlr: 5e-2\nepochs: 2\ninner_lr: 1e-4\n")
    cfg = load_config(path)
    assert (cfg.ridge, cfg.lr, cfg.epochs, cfg.inner_lr) == (1e-3, 5e-2, 2, 1e-4)
    path.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="epochs='many': expected an integer"):
        load_config(path)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        TrainConfig(ridge=0, cg_max_iter=0, momentum=-1, hypergrad="magic")
    message = str(err.value)
    for fragment in ("ridge", "cg_max_iter", "momentum", "hypergrad"):
        assert fragment in message


def test_the_paper_k_steps_need_a_problem_that_uses_them():
    """amortized takes its own SOBA steps: a K-step config there would be silently ignored (the
    digits grid's 'paper's inner loop' equalled the default to the last digit before this)."""
    with pytest.raises(ConfigError, match="add --inner-problem batch"):
        TrainConfig(inner_solve="steps")  # amortized, the default
    TrainConfig(inner_solve="steps", inner_problem="batch")
    TrainConfig(inner_solve="steps", inner_problem="memory")


# A damaged or hand-edited config file: each entry must be one ConfigError naming the field.
DAMAGED = {
    "epochs: .inf": "epochs=inf: expected a finite number",
    "epochs: 1.0e+30": "expected at most 100,000",
    "epochs: 2.7": "epochs=2.7: expected an integer",
    "epochs: true": "epochs=True, expected an integer",
    "epochs: [1, 2]": "epochs=[1, 2], expected an integer",
    "lr: .inf": "lr=inf: expected a finite number",
    "lambda: .nan": "lambda=nan: expected a finite number",
    "method: {a: 1}": "method={'a': 1}, expected a text",
    "method: magic": "method='magic', expected one of",
    "dataset: [5]": "dataset=[5], expected a text",
    "backbone: vgg": "backbone='vgg', expected one of",
    "head_refresh: 'yes'": "head_refresh='yes', expected true or false",
    "seed: -1": "seed=-1, expected >= 0",
    "seed: 1.0e+40": "expected at most 4,294,967,295",
    "data_dir: [1]": "data_dir=[1], expected a text or null",
    "batch_size: 100000000000": "batch_size=100000000000, expected at most",
    "inner_lr: .inf": "inner_lr=inf: expected a finite number or 'auto'",
    "- a\n- b": "must be a mapping",
    "epocs: 3": "epocs (did you mean epochs?)",
    "epochs: [": "is not valid YAML",
}


@pytest.mark.parametrize("text", list(DAMAGED), ids=list(range(len(DAMAGED))))
def test_a_damaged_config_file_is_one_line_naming_the_field(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=re.escape(DAMAGED[text])) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_a_run_record_from_a_newer_abrl_is_read_without_its_new_keys(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 3\nfuture_option: 7\n")
    with pytest.raises(ConfigError, match="future_option"):
        load_config(path)  # a user's file: most often a typo
    assert load_config(path, ignore_unknown=True).epochs == 3


def test_integral_numbers_from_yaml_become_integers():
    assert load_config(epochs="1e1", limit=200.0).epochs == 10
    assert load_config(limit=200.0).limit == 200


def test_each_method_reads_its_own_fields_and_the_general_ones():
    from abrl_deploy.training.config import METHOD_FIELDS, fields_read_by

    every = {f for f in TrainConfig.__dataclass_fields__}
    assert set().union(*METHOD_FIELDS.values()) <= every  # no stale name
    assert "inner_problem" in fields_read_by("abrl") and "inner_problem" not in fields_read_by(
        "finetune"
    )
    assert "lambda_" in fields_read_by("joint") and "temperature" in fields_read_by("simclr")
    assert {"ridge", "epochs", "lr"} <= fields_read_by("finetune")  # the refit head's ridge too


def test_what_code_and_yaml_pass_for_these_types_is_read_and_huge_numbers_are_one_line(tmp_path):
    from pathlib import Path

    import numpy as np

    cfg = TrainConfig(data_dir=Path("/data"), lr=np.float64(0.1), seed=np.int64(3))
    assert (cfg.data_dir, cfg.lr, cfg.seed) == ("/data", 0.1, 3)
    assert type(cfg.seed) is int and cfg.to_yaml()  # saved as plain YAML
    path = tmp_path / "c.yaml"
    path.write_text("data_dir: 2024\ndata_cache: off\n")
    cfg = load_config(path)
    assert (cfg.data_dir, cfg.data_cache) == ("2024", "off")
    for text in ("epochs: 1" + "0" * 400, "lr: 1" + "0" * 400, "inner_lr: 1" + "0" * 400):
        path.write_text(text + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert "\n" not in str(err.value) and (
            "at most" in str(err.value) or "finite" in str(err.value)
        )
    with pytest.raises(ConfigError, match="lr="):
        TrainConfig(lr=10**400)
