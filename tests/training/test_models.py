import pytest
import torch
from safetensors.torch import save_file

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.methods import registry
from abrl_deploy.training.methods.base import Method
from abrl_deploy.training.models import build_classifier, resolve_stem


def test_cifar_stem_and_feature_split():
    model = build_classifier("resnet18", 7, stem="cifar")
    assert model.encoder.conv1.stride == (1, 1) and isinstance(
        model.encoder.maxpool, torch.nn.Identity
    )
    x = torch.randn(2, 3, 16, 16)
    z = model.forward_features(x)
    assert z.shape == (2, 512)
    torch.testing.assert_close(model(x), model.forward_head(z))
    assert resolve_stem("auto", 32) == "cifar" and resolve_stem("auto", 224) == "imagenet"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pretrained_local_state_dict_is_loaded(tmp_path, suffix):
    torch.manual_seed(1)
    source = build_classifier("resnet18", 3, stem="cifar").encoder.state_dict()
    path = tmp_path / f"enc{suffix}"
    if suffix == ".pt":
        torch.save(source, path)
    else:
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    torch.manual_seed(2)
    model = build_classifier("resnet18", 3, stem="cifar", pretrained=path)
    for k, v in source.items():
        assert torch.equal(model.encoder.state_dict()[k], v), k


def test_pretrained_with_the_wrong_stem_says_so(tmp_path):
    path = tmp_path / "imagenet.pt"
    torch.save(build_classifier("resnet18", 3, stem="imagenet").encoder.state_dict(), path)
    with pytest.raises(ConfigError, match="--stem imagenet"):
        build_classifier("resnet18", 3, stem="cifar", pretrained=path)


def test_method_registry_is_strict():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_method("abrl")(type("Again", (Method,), {}))
    with pytest.raises(ConfigError, match="known: abrl, finetune, joint, simclr"):
        registry.get_method("abrll")
