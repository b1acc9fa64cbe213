"""Export (needs torch and onnx; TensorRT optional): ``from abrl_deploy.export import export``."""

from .api import export
from .spec import ExportResult, ExportSpec

__all__ = ["ExportResult", "ExportSpec", "export"]
