"""Export (needs torch and onnx; TensorRT optional): ``from abrl_deploy.export import export``.

Lazy: the torch-free modules (``spec``: formats, precisions, file names) are importable without
loading torch; ``export`` loads it when called.
"""

from .dispatch import export
from .spec import ExportResult, ExportSpec

__all__ = ["ExportResult", "ExportSpec", "export"]
