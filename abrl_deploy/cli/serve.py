"""``abrl serve``: an HTTP service for an exported model (FastAPI + uvicorn, torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abrl_deploy.serve.server import ServeConfig

from .app import handle_errors
from .options import ServingBackend, defaults

_SPEC = defaults(ServeConfig)


@handle_errors
def serve(
    model: Annotated[Path, typer.Argument(help="An exported .onnx (or .engine with sidecar).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = _SPEC.host,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = _SPEC.port,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes, each with its own copy of the model.")
    ] = _SPEC.workers,
    backend: ServingBackend = _SPEC.backend,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads per worker.")
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body (413 above).")
    ] = _SPEC.max_body_mb,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Most images in one request (413 above).")
    ] = _SPEC.max_batch,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            help="Model calls at once per worker (decoding of other requests goes on "
            "meanwhile); 1 because a CPU session already uses every thread.",
        ),
    ] = _SPEC.concurrency,
) -> None:
    """Serve POST /v1/predict, POST /v1/embed, GET /v1/model and GET /healthz over HTTP."""
    from abrl_deploy.serve import run_server

    config = ServeConfig(
        model=str(model), host=host, port=port, workers=workers, backend=backend,
        threads=threads, max_body_mb=max_body_mb, max_batch=max_batch, concurrency=concurrency,
    )  # fmt: skip
    run_server(config)
