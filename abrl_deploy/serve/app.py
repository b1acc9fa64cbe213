"""The HTTP API of ``abrl serve``: a FastAPI app around one ``Predictor``.

    POST /v1/predict   images → top-k classes      POST /v1/embed   images → features
    GET  /v1/model     the model card and runtime   GET  /healthz    {"status": "ok"}

Images come as a multipart upload (field ``file``, repeated for a batch) or as JSON (see
``JSON_DESCRIPTION``). Every user error is a 4xx with ``{"error": "<one line>"}``; decoding and
inference run in the threadpool, never on the event loop. This module imports FastAPI; the
rest of ``abrl_deploy`` does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from abrl_deploy import __version__
from abrl_deploy.errors import AbrlError, DependencyError, InputError, first_line
from abrl_deploy.serve.inputs import (
    JSON_ITEMS,
    BatchTooLargeError,
    ImageBatch,
    check_batch,
    parse_form_top_k,
    parse_json,
    to_tensor,
)

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
except ImportError as exc:
    raise DependencyError(
        f"abrl serve needs FastAPI ({first_line(exc)}); pip install 'abrl[serve]'"
    ) from None

log = logging.getLogger("abrl.serve")

JSON_DESCRIPTION = (
    'JSON: {"images": [...], "top_k": 5}; ' + JSON_ITEMS + ". Multipart: one or more files in "
    "the field 'file' (and 'top_k' as a form field). A batch holds at most --max-batch images."
)


class PredictRequest(BaseModel):
    images: list[str | list[list[list[int]]]] = Field(description=JSON_ITEMS, min_length=1)
    top_k: int = Field(5, ge=1, description="Classes per image, best first.")


class EmbedRequest(BaseModel):
    images: list[str | list[list[list[int]]]] = Field(description=JSON_ITEMS, min_length=1)


class PredictionOut(BaseModel):
    labels: list[str]
    class_ids: list[int]
    probabilities: list[float]


class PredictResponse(BaseModel):
    model: str
    backend: str
    predictions: list[PredictionOut]


class EmbedResponse(BaseModel):
    model: str
    backend: str
    dim: int
    features: list[list[float]]


class ModelResponse(BaseModel):
    card: dict[str, Any]
    runtime: dict[str, Any]
    limits: dict[str, int]


class ErrorResponse(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 413, 415)}


def _request_body(schema: type[BaseModel], with_top_k: bool) -> dict[str, Any]:
    """The OpenAPI request body: the JSON schema and the multipart form, side by side."""
    form: dict[str, Any] = {"file": {"type": "array", "items": {"type": "string",
                                                              "format": "binary"}}}  # fmt: skip
    if with_top_k:
        form["top_k"] = {"type": "integer", "minimum": 1, "default": 5}
    return {"requestBody": {"required": True, "description": JSON_DESCRIPTION, "content": {
        "application/json": {"schema": schema.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": form,
                                           "required": ["file"]}},
    }}}  # fmt: skip


class _BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, and while a body without
    one (chunked) streams in, before it is all in memory."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: int, streamed: bool = False) -> str:
        got = f"{size:,} bytes so far" if streamed else f"{size:,} bytes"
        return (
            f"request body ({got}) is over this server's limit of {self.max_bytes:,} bytes "
            "(--max-body-mb); send fewer or smaller images"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"error": self._message(int(declared))}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def receive_limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._message(seen, streamed=True))
            return message

        await self.app(scope, receive_limited, send)


def create_app(
    predictor: Any, *, max_body_bytes: int, max_batch: int, concurrency: int = 1
) -> FastAPI:
    """The service for ``predictor`` (a ``Predictor``; the caller owns and closes it).

    At most ``concurrency`` model calls run at once; the requests' decoding and preprocessing run
    beside them in the threadpool. Unbounded, four concurrent requests on a 2-core CPU ran four
    2-thread ONNX Runtime calls at once and the service reached 83% of the in-process
    throughput (issue 20)."""
    app = FastAPI(
        title="abrl serve",
        summary=f"{predictor.card.backbone} ({predictor.card.method}) image classifier",
        description=JSON_DESCRIPTION,
        version=__version__,
    )
    app.state.predictor = predictor
    slots = threading.BoundedSemaphore(concurrency)
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    _add_error_handlers(app)
    model = str(predictor.path)
    card = predictor.card.to_dict()

    @asynccontextmanager
    async def read_images(request: Request, with_top_k: bool) -> AsyncIterator[ImageBatch]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            body = await request.body()
            yield await run_in_threadpool(parse_json, body, max_batch=max_batch,
                                          with_top_k=with_top_k)  # fmt: skip
        elif kind == "multipart/form-data":
            async with _form(request, max_batch) as form:
                yield _form_batch(form, max_batch, with_top_k)
        else:
            raise HTTPException(415, f"content type {kind or 'none'!r}: send application/json "
                                "or multipart/form-data; see /docs")  # fmt: skip

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS,
              openapi_extra=_request_body(PredictRequest, True))  # fmt: skip
    async def predict(request: Request) -> JSONResponse:
        """The top-k classes of each image, best first, with softmax probabilities."""
        async with read_images(request, with_top_k=True) as batch:
            out = await run_in_threadpool(_predict, predictor, batch, slots)
        return JSONResponse({"model": model, "backend": predictor.backend, "predictions": out})

    @app.post("/v1/embed", response_model=EmbedResponse,
              responses={**ERRORS, 409: {"model": ErrorResponse}},
              openapi_extra=_request_body(EmbedRequest, False))  # fmt: skip
    async def embed(request: Request) -> JSONResponse:
        """The encoder's features of each image (models exported with a `features` output)."""
        if "features" not in predictor.outputs:
            raise HTTPException(409, "this model has no 'features' output; export it with "
                                "abrl export RUN_DIR --outputs logits,features")  # fmt: skip
        async with read_images(request, with_top_k=False) as batch:
            features = await run_in_threadpool(_embed, predictor, batch, slots)
        return JSONResponse({"model": model, "backend": predictor.backend,
                             "dim": len(features[0]), "features": features})  # fmt: skip

    @app.get("/v1/model", response_model=ModelResponse)
    def model_info() -> dict[str, Any]:
        """The model card, where the model runs, and this server's request limits."""
        limits = {"max_body_bytes": max_body_bytes, "max_batch": max_batch}
        return {"card": card, "runtime": predictor.describe(), "limits": limits}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@asynccontextmanager
async def _form(request: Request, max_batch: int) -> AsyncIterator[Any]:
    """The parsed multipart form; Starlette's too-many-files error becomes our 413."""
    try:
        form = await request.form(max_files=max_batch, max_fields=8)
    except HTTPException as exc:
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            check_batch(max_batch + 1, max_batch, at_least=True)
        raise
    try:
        yield form
    finally:
        await form.close()


def _form_batch(form: Any, max_batch: int, with_top_k: bool) -> ImageBatch:
    allowed = {"file", "top_k"} if with_top_k else {"file"}
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        raise InputError(f"unknown form fields {unknown}; valid: {sorted(allowed)}")
    files = form.getlist("file")
    if not files:
        raise InputError("no images: send one or more files in the multipart field 'file'")
    if not all(isinstance(f, UploadFile) for f in files):
        raise InputError("the field 'file' must hold file uploads (curl -F file=@image.png)")
    check_batch(len(files), max_batch)
    top_k = form.get("top_k", "5")
    if not isinstance(top_k, str):
        raise InputError("the field 'top_k' must be text, not a file")
    top_k = parse_form_top_k(top_k)
    return ImageBatch(tuple(f.file for f in files), top_k, tuple(f.filename for f in files))


def _predict(predictor: Any, batch: ImageBatch, slots: Any) -> list[dict[str, Any]]:
    x = to_tensor(batch, predictor.preprocess)  # decoding: outside the model's slots
    with slots:
        predictions = predictor.predict(x, top_k=batch.top_k)
    return [p.to_dict() for p in predictions]


def _embed(predictor: Any, batch: ImageBatch, slots: Any) -> list[list[float]]:
    x = to_tensor(batch, predictor.preprocess)
    with slots:
        return predictor.embed(x).tolist()


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"error": "<one line>"}``; a traceback only ever goes to the log."""

    def reply(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return reply(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return reply(422, f"{where}: {first.get('msg', 'invalid request')}")

    async def abrl_error(request: Request, exc: AbrlError) -> JSONResponse:
        if isinstance(exc, BatchTooLargeError):
            return reply(413, str(exc))
        if isinstance(exc, InputError):
            return reply(400, str(exc))
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return reply(500, first_line(exc))

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return reply(500, "internal server error; the server log has the details")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(AbrlError, abrl_error)
    app.add_exception_handler(Exception, internal_error)
