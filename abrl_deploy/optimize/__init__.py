"""``abrl optimize``: on the machine it runs on, build and time every deployment variant of a run
(ONNX fp32/fp16/int8 on ONNX Runtime and OpenVINO, bf16 where the CPU has it), measure each one's
accuracy on half of the test split (no method trains on it), and ship the fastest within an
accuracy budget.

Lazy: ``run_optimize`` needs the train and export extras. The record it writes is read back by
``abrl_deploy.deploy_record``, which serving uses without this package.
"""

__all__ = ["OptimizeSpec", "run_optimize"]


def __getattr__(name: str):
    if name == "OptimizeSpec":
        from .spec import OptimizeSpec

        return OptimizeSpec
    if name == "run_optimize":
        from .api import run_optimize

        return run_optimize
    raise AttributeError(name)
