"""What a request to ``abrl serve`` carries, turned into the model's float batch. FastAPI-free.

Every user mistake raises ``InputError`` (answered with 400) or ``BatchTooLargeError`` (413),
with one line that says which image or field is wrong and what is accepted.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from abrl_deploy.errors import InputError, first_line
from abrl_deploy.preprocess import Preprocessor

# A decoded image is held whole before resizing: 50 MP is ~150 MB of RGB, per request in flight.
MAX_IMAGE_PIXELS = 50_000_000
JSON_ITEMS = (
    "each item of 'images' is a base64-encoded image file (JPEG, PNG, ...; a 'data:' URL prefix "
    "is allowed) or RGB pixels as nested integer lists [H][W][3] in 0..255"
)


class BatchTooLargeError(InputError):
    """More images in one request than ``--max-batch``."""


@dataclass(frozen=True)
class ImageBatch:
    """The images of one request, undecoded, and the ``top_k`` asked for."""

    items: tuple[Any, ...]  # bytes of an image file, a binary file object, or uint8 [H,W,3]
    top_k: int = 5
    names: tuple[str | None, ...] = ()  # uploaded file names, to point at the bad one


def parse_json(body: bytes, *, max_batch: int, with_top_k: bool) -> ImageBatch:
    """``{"images": [...], "top_k": 5}`` → an ``ImageBatch``; checks shape, not pixels."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON: {first_line(exc)}") from None
    allowed = {"images", "top_k"} if with_top_k else {"images"}
    if not isinstance(data, dict) or "images" not in data:
        raise InputError(f"expected a JSON object with keys {sorted(allowed)}; {JSON_ITEMS}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"unknown JSON keys {unknown}; valid: {sorted(allowed)}")
    images = data["images"]
    if not isinstance(images, list) or not images:
        raise InputError(f"'images' must be a non-empty list; {JSON_ITEMS}")
    check_batch(len(images), max_batch)
    items = tuple(_json_item(item, i) for i, item in enumerate(images))
    return ImageBatch(items, parse_top_k(data.get("top_k", 5)))


def parse_top_k(value: Any) -> int:
    """``top_k`` from JSON: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"top_k must be an integer >= 1, got {value!r}")
    if value < 1:
        raise InputError(f"top_k {value} must be >= 1")
    return value


def parse_form_top_k(text: str) -> int:
    """``top_k`` from a multipart form field (text)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise InputError(f"top_k {text!r} is not an integer") from None
    return parse_top_k(value)


def check_batch(count: int, max_batch: int, *, at_least: bool = False) -> None:
    """``BatchTooLargeError`` past ``max_batch`` (``at_least``: the count is a lower bound)."""
    if count > max_batch:
        got = f"more than {max_batch}" if at_least else str(count)
        raise BatchTooLargeError(
            f"got {got} images in one request; the server takes at most {max_batch} "
            "(--max-batch): split the batch"
        )


def _json_item(item: Any, index: int) -> bytes | np.ndarray:
    if isinstance(item, str):
        text = item.split(",", 1)[1] if item.startswith("data:") and "," in item else item
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"image {index}: not valid base64; {JSON_ITEMS}") from None
    if isinstance(item, list):
        try:
            pixels = np.asarray(item)
        except ValueError:  # ragged nesting
            pixels = np.asarray([], dtype=object)
        if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype.kind not in "iu":
            raise InputError(
                f"image {index}: pixel lists must be integers shaped [H][W][3], got "
                f"{_describe(pixels)}; {JSON_ITEMS}"
            )
        if pixels.size == 0 or pixels.min() < 0 or pixels.max() > 255:
            raise InputError(f"image {index}: pixel values must be in 0..255 and non-empty")
        return pixels.astype(np.uint8)
    raise InputError(f"image {index}: got a JSON {type(item).__name__}; {JSON_ITEMS}")


def _describe(pixels: np.ndarray) -> str:
    if pixels.dtype == object or pixels.size == 0:
        return "ragged or empty lists"
    kind = {"f": "numbers with fractions", "b": "booleans", "U": "strings"}.get(
        pixels.dtype.kind, "integers"
    )
    return f"{kind} shaped {list(pixels.shape)}"


def to_tensor(batch: ImageBatch, preprocess: Preprocessor) -> np.ndarray:
    """Decode and preprocess each image in turn (one decoded image in memory at a time):
    float32 [N,3,S,S], exactly what ``Predictor`` makes from the same files."""
    out = []
    for i, item in enumerate(batch.items):
        name = batch.names[i] if i < len(batch.names) else None
        label = f"image {i}" + (f" ({name!r})" if name else "")
        if isinstance(item, np.ndarray):
            out.append(preprocess(item)[0])
        else:
            out.append(preprocess.pil(_decode(item, label)))
    return np.stack(out)


def _decode(data: bytes | BinaryIO, label: str):
    from PIL import Image  # a dependency of abrl[serve]; checked when the server starts

    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with Image.open(stream) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"{label}: {w}x{h} pixels is more than this server decodes "
                    f"({MAX_IMAGE_PIXELS:,}); downscale it first"
                )
            return img.convert("RGB")
    except InputError:
        raise
    except Exception as exc:
        why = first_line(exc) or type(exc).__name__
        raise InputError(f"{label}: cannot decode: {why}; expected a JPEG/PNG/... file") from None
