"""Run the service with uvicorn: one process, or ``workers`` processes that each load the model.

Worker processes are started by uvicorn from an import string, so they cannot be handed a
Python object: the parent puts the ``ServeConfig`` in the environment (``ABRL_SERVE_CONFIG``,
JSON) and each worker's ``app_from_env`` opens its own ``Predictor`` from it.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from abrl_deploy.errors import ConfigError, DependencyError

CONFIG_ENV = "ABRL_SERVE_CONFIG"
FACTORY = "abrl_deploy.serve.server:app_from_env"
# distribution → its import names (python-multipart renamed its module), all in abrl[serve]
DEPENDENCIES = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",),
                "python-multipart": ("python_multipart", "multipart"), "pillow": ("PIL",),
                "onnxruntime": ("onnxruntime",)}  # fmt: skip


@dataclass(frozen=True)
class ServeConfig:
    """``abrl serve``: what to load and where to listen. ``threads`` is per worker."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    backend: str = "auto"
    threads: int | None = None
    max_body_mb: float = 16.0
    max_batch: int = 64
    # Model calls at once per worker; decoding and parsing of other requests go on meanwhile.
    # 1: a CPU session already uses every thread, and concurrent calls oversubscribe the cores.
    concurrency: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"--port {self.port} must be in 0..65535")
        if self.workers < 1:
            problems.append(f"--workers {self.workers} must be >= 1")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads {self.threads} must be >= 1")
        if not self.max_body_mb > 0:
            problems.append(f"--max-body-mb {self.max_body_mb} must be > 0")
        if self.max_batch < 1:
            problems.append(f"--max-batch {self.max_batch} must be >= 1")
        if self.concurrency < 1:
            problems.append(f"--concurrency {self.concurrency} must be >= 1")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def check_dependencies() -> None:
    """One ``DependencyError`` naming every missing package of the ``serve`` extra."""
    missing = [dist for dist, names in DEPENDENCIES.items() if not any(map(_importable, names))]
    if missing:
        raise DependencyError(
            f"abrl serve needs {', '.join(missing)}, not installed; pip install 'abrl[serve]'"
        )


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def build_app(config: ServeConfig) -> Any:
    """Open the model and return its FastAPI app (the process keeps the Predictor open)."""
    from abrl_deploy.predictor import Predictor
    from abrl_deploy.serve.app import create_app

    predictor = Predictor(config.model, backend=config.backend, threads=config.threads)
    return create_app(predictor, max_body_bytes=config.max_body_bytes, max_batch=config.max_batch,
                      concurrency=config.concurrency)  # fmt: skip


def app_from_env() -> Any:
    """The uvicorn factory of each worker process (``--workers`` > 1)."""
    text = os.environ.get(CONFIG_ENV)
    if text is None:
        raise ConfigError(f"{CONFIG_ENV} is not set; start workers with abrl serve --workers N")
    return build_app(ServeConfig(**json.loads(text)))


def run_server(config: ServeConfig) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM); uvicorn logs each request."""
    check_dependencies()
    import uvicorn

    # Open the model here even for workers: a wrong path or backend fails once, on one line,
    # before any worker starts.
    app = build_app(config)
    print(
        f"abrl serve: {config.model} on {app.state.predictor.backend}, "
        f"{config.workers} worker(s), {config.concurrency} model call(s) at once per worker "
        f"(--concurrency), at most {config.max_batch} images and "
        f"{config.max_body_mb:g} MB per request; API docs at http://{config.host}:{config.port}"
        "/docs",
        file=sys.stderr,
        flush=True,
    )
    if app.state.predictor.backend_note:
        print(f"abrl serve: {app.state.predictor.backend_note}", file=sys.stderr, flush=True)
    if config.workers == 1:
        try:
            uvicorn.run(app, host=config.host, port=config.port)
        finally:
            app.state.predictor.close()
        return
    app.state.predictor.close()
    os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    uvicorn.run(FACTORY, factory=True, host=config.host, port=config.port, workers=config.workers)
