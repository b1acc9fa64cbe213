import pytest

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.config import TrainConfig, load_config


def test_yaml_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ridge: 1e-3\nlr: 5e-2\nepochs: 2\ninner_lr: 1e-4\n")
    cfg = load_config(path)
    assert (cfg.ridge, cfg.lr, cfg.epochs, cfg.inner_lr) == (1e-3, 5e-2, 2, 1e-4)
    path.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="epochs='many': expected a int"):
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
