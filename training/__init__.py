"""Training (needs torch, torchvision): ``from abrl_deploy.training import train, TrainConfig``."""

from .config import TrainConfig, load_config
from .run import train

__all__ = ["TrainConfig", "load_config", "train"]
