"""--precision: auto picks bf16 only where the hardware runs it, and the method honours it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from abrl_deploy import machine
from abrl_deploy.errors import ConfigError
from abrl_deploy.training.config import TrainConfig, load_config
from abrl_deploy.training.methods import get_method
from abrl_deploy.training.models import Classifier
from abrl_deploy.training.precision import choose_precision

ZEN3 = ["avx2"]
ZEN4 = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
SAPPHIRE_RAPIDS = ["avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"]


@pytest.mark.parametrize(
    ("flags", "dtype"), [(ZEN3, "fp32"), (["avx2", "avx512f", "avx512_vnni"], "fp32"),
                         (ZEN4, "bf16"), (SAPPHIRE_RAPIDS, "bf16")],
)  # fmt: skip
def test_auto_on_the_cpu_follows_its_bf16_instructions(flags, dtype):
    p = choose_precision("auto", "cpu", cpu_flags=flags)
    assert p.dtype == dtype and p.autocast == (dtype == "bf16")
    assert p.reason.startswith("auto: the CPU has")
    assert p.channels_last == (dtype == "bf16")  # fp32 stays contiguous: today's runs unchanged


def test_auto_on_cuda_follows_the_device():
    assert choose_precision("auto", "cuda", cpu_flags=ZEN3, cuda_bf16=True).dtype == "bf16"
    assert choose_precision("auto", "cuda", cpu_flags=ZEN4, cuda_bf16=False).dtype == "fp32"


def test_explicit_choices_win_and_say_so():
    assert choose_precision("fp32", "cpu", cpu_flags=ZEN4).dtype == "fp32"
    emulated = choose_precision("bf16", "cpu", cpu_flags=ZEN3)
    assert emulated.dtype == "bf16" and "emulated" in emulated.reason
    forced = choose_precision("auto", "cpu", cpu_flags=ZEN4, channels_last=False)
    assert not forced.channels_last and forced.channels_last_reason == "--no-channels-last"
    with pytest.raises(ConfigError, match="does not support bf16"):
        choose_precision("bf16", "cuda", cuda_bf16=False)


def tiny_method(precision: str):
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh())
    cfg = TrainConfig(method="finetune", precision=precision)
    return get_method("finetune")(cfg, Classifier(encoder, 6, 3), None, torch.device("cpu"))


@pytest.mark.parametrize(("flags", "dtype"), [(ZEN3, torch.float32), (ZEN4, torch.bfloat16)])
def test_the_method_runs_the_encoder_in_what_auto_chose(monkeypatch, flags, dtype):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    method = tiny_method("auto")
    with method.autocast():
        z = method.model.forward_features(torch.randn(4, 3, 2, 2))
    assert z.dtype == dtype


def test_precision_in_yaml_and_the_old_amp_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("precision: bf16\n")
    assert load_config(path).precision == "bf16"
    path.write_text("amp: false\n")  # a config.yaml written before --precision
    assert load_config(path).precision == "fp32"
    with pytest.raises(ConfigError, match="precision='fp16'"):
        TrainConfig(precision="fp16")
