"""``abrl reproduce``: the paper's tables and claims, measured with their uncertainty.

Torch-free to import; training, export and timing import torch when they run.
"""

from .api import reproduce
from .plan import ReproduceSpec

__all__ = ["ReproduceSpec", "reproduce"]
