"""Training (needs torch, torchvision): ``from abrl_deploy.training import train, TrainConfig``.

Lazy: ``config`` (TrainConfig and every choice list: methods, datasets, backbones, ...) is
torch-free, so the CLI reads it without loading torch; ``train`` loads torch when first used.
"""

from .config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "train"]


def __getattr__(name: str):
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
