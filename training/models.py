"""Classifier(encoder, head) on torchvision ResNets, with the CIFAR stem for small inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from abrl_deploy.errors import ConfigError

# name -> (builder, feature dimension)
BACKBONES: dict[str, tuple[Callable[..., tvm.ResNet], int]] = {
    "resnet18": (tvm.resnet18, 512),
    "resnet34": (tvm.resnet34, 512),
    "resnet50": (tvm.resnet50, 2048),
}


class Classifier(nn.Module):
    """An encoder f_θ and a linear head g_φ, split as timm does (forward_features/forward_head)."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resolve_stem(stem: str, image_size: int) -> str:
    """'auto' picks the CIFAR stem (3×3 stride-1 conv, no max-pool) up to 64 px inputs."""
    if stem != "auto":
        return stem
    return "cifar" if image_size <= 64 else "imagenet"


def build_classifier(
    backbone: str,
    num_classes: int,
    *,
    stem: str = "imagenet",
    pretrained: str | Path | None = None,
) -> Classifier:
    """A ResNet encoder (fc removed) plus a fresh linear head; weights only from a local file."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; known: {sorted(BACKBONES)}")
    builder, dim = BACKBONES[backbone]
    encoder = builder(weights=None)
    encoder.fc = nn.Identity()
    if stem == "cifar":
        encoder.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        encoder.maxpool = nn.Identity()
    if pretrained is not None:
        _load_pretrained(encoder, Path(pretrained))
    return Classifier(encoder, dim, num_classes)


def _load_pretrained(encoder: nn.Module, path: Path) -> None:
    """Load a local state dict (safetensors or a weights-only torch file); the fc is ignored."""
    if not path.is_file():
        raise ConfigError(
            f"--pretrained {path} does not exist; give a local state dict (.safetensors or .pt), "
            "abrl never downloads weights"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"--pretrained {path} is not a weights-only state dict: {exc}"
            ) from None
    state = {k.removeprefix("encoder."): v for k, v in state.items() if not k.startswith("fc.")}
    own = encoder.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise ConfigError(
            f"--pretrained {path}: shapes differ for {wrong[:3]}; an ImageNet checkpoint needs "
            "--stem imagenet"
        )
    missing, _ = encoder.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(
            f"--pretrained {path} lacks {len(missing)} encoder weights, e.g. {missing[:3]}"
        )
