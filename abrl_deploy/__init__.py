"""abrl: train, export and benchmark ABRL image classifiers.

``import abrl_deploy`` stays torch-free: production services import it with only numpy and
onnxruntime installed. Training lives in ``abrl_deploy.training`` and needs torch.
"""

__version__ = "0.1.0"
