"""abrl: train, export and benchmark ABRL image classifiers.

``import abrl_deploy`` stays torch-free: production services import it with only numpy and
onnxruntime installed. Training lives in ``abrl_deploy.training`` and needs torch.
"""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import abrl_deploy` costs nothing and `abrl --help` stays fast.
    if name == "Predictor":
        from abrl_deploy.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'abrl_deploy' has no attribute {name!r}")
