"""``abrl serve``: an HTTP service (FastAPI + uvicorn) around a ``Predictor``.

    from abrl_deploy.serve import ServeConfig, run_server
    run_server(ServeConfig("runs/abrl/model.onnx", port=8000))

Importing this package does not import FastAPI (it is the optional extra ``abrl[serve]``);
``create_app`` and the app module import it when first used.
"""

from __future__ import annotations

from typing import Any

from abrl_deploy.serve.server import ServeConfig, app_from_env, check_dependencies, run_server

__all__ = ["ServeConfig", "app_from_env", "check_dependencies", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        check_dependencies()
        from abrl_deploy.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'abrl_deploy.serve' has no attribute {name!r}")
