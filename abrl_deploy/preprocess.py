"""The card's eval preprocessing without torch: what a service does to an image before the model.

It repeats training's eval transform step for step (torchvision on PIL images: shorter-side
bilinear resize, centre crop, /255, normalise), so a service gets the accuracy the card reports;
a test compares it with torchvision on real images. Inputs: file paths, PIL images, uint8 HWC
arrays (one or a batch), and float NCHW arrays that are already preprocessed.

A third-party model's card (built from ``abrl bench`` flags) may also ask for another
interpolation, no resize (``resize`` 0), raw 0-255 pixels (``scale`` "1") or BGR channel order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.card import ModelCard
from abrl_deploy.errors import ConfigError, DependencyError, InputError, first_line

EXPECTED = (
    "expected image file paths, PIL images, uint8 arrays [H,W,3] or [N,H,W,3], "
    "or float arrays [3,S,S] or [N,3,S,S] already preprocessed"
)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DependencyError("reading images needs Pillow; pip install 'abrl[runtime]'") from None
    return Image


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
SCALES = {"1/255": 255.0, "1": 1.0}  # card "scale" -> what pixels are divided by
CHANNEL_ORDERS = ("RGB", "BGR")
# What a card's eval steps mean when they do not say (every card before issue 12 says none).
DEFAULT_STEPS = {"interpolation": "bilinear", "scale": "1/255", "channel_order": "RGB"}


class Preprocessor:
    """Turns what a caller has into the float32 NCHW batch the model takes."""

    def __init__(self, card: ModelCard):
        ev = card.preprocessing.get("eval", {})
        self.size = card.input_size
        self.resize = int(ev.get("resize", card.input_size))  # shorter side; 0: no resize
        self.crop = int(ev.get("crop", card.input_size))
        self.mean = np.asarray(card.mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(card.std, np.float32).reshape(3, 1, 1)
        steps = {**DEFAULT_STEPS, **ev}
        self.interpolation, self.channel_order = steps["interpolation"], steps["channel_order"]
        scale = str(steps["scale"])
        problems = []
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation {self.interpolation!r} (known: {INTERPOLATIONS})")
        if scale not in SCALES:
            problems.append(f"scale {scale!r} (known: {tuple(SCALES)})")
        if self.channel_order not in CHANNEL_ORDERS:
            problems.append(f"channel_order {self.channel_order!r} (known: {CHANNEL_ORDERS})")
        if self.resize < 0 or self.crop != self.size:
            problems.append(f"resize {self.resize} / crop {self.crop} for input {self.size}")
        if problems:
            raise ConfigError("model card preprocessing has an unknown " + "; ".join(problems))
        self.divisor = SCALES[scale]

    def __call__(self, images: Any) -> np.ndarray:
        """A float32 [N,3,S,S] batch from one input or a list of inputs."""
        if isinstance(images, np.ndarray):
            return self._array(images)
        if isinstance(images, (str, Path)) or _is_pil(images):
            return self._one(images)[None]
        if isinstance(images, Sequence):
            if len(images) == 0:
                raise InputError(f"got an empty list of images; {EXPECTED}")
            return np.concatenate([self(item) if isinstance(item, np.ndarray)
                                   else self._one(item)[None] for item in images])  # fmt: skip
        raise InputError(f"got {type(images).__name__}; {EXPECTED}")

    def _one(self, item: Any) -> np.ndarray:
        if isinstance(item, (str, Path)):
            return self.pil(_open(item))
        if _is_pil(item):
            return self.pil(item.convert("RGB"))
        raise InputError(f"got {type(item).__name__} in the list; {EXPECTED}")

    def _array(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[-1] != 3:
                raise InputError(f"got a uint8 array of shape {x.shape}; {EXPECTED}")
            image = _pil().fromarray
            return np.stack([self.pil(image(np.ascontiguousarray(row))) for row in x])
        if x.dtype.kind == "f":
            if x.ndim == 3:
                x = x[None]
            want = (3, self.size, self.size)
            if x.ndim != 4 or x.shape[1:] != want:
                raise InputError(
                    f"got a float array of shape {x.shape}; float input must be preprocessed "
                    f"[N,{','.join(map(str, want))}] (or pass uint8 [H,W,3] pixels)"
                )
            if not np.isfinite(x).all():
                raise InputError("got a float array with NaN or inf values; pass finite values")
            return np.ascontiguousarray(x, dtype=np.float32)
        raise InputError(f"got an array of dtype {x.dtype}; {EXPECTED}")

    def pil(self, img) -> np.ndarray:
        """One RGB PIL image through resize, crop, /255 and normalise: float32 [3,S,S]."""
        Image = _pil()
        w, h = img.size
        if self.resize:
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            if (new_w, new_h) != (w, h):  # torchvision returns the image itself when sizes match
                resample = getattr(Image.Resampling, self.interpolation.upper())
                img = img.resize((new_w, new_h), resample)
        img = _center_crop(img, self.crop)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / self.divisor
        if self.channel_order == "BGR":
            x = x[::-1]
        return (x - self.mean) / self.std


def _center_crop(img, size: int):
    """torchvision's CenterCrop on a PIL image (it pads with zeros when the image is smaller)."""
    w, h = img.size
    if w < size or h < size:
        Image = _pil()
        padded = Image.new("RGB", (max(w, size), max(h, size)))
        padded.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = padded, padded.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(x, Image.Image)


def _open(path: str | Path):
    Image = _pil()
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image file {path} does not exist") from None
    except Exception as exc:
        why = first_line(exc) or type(exc).__name__
        raise InputError(f"cannot read image {path}: {why}; expected a JPEG/PNG/... file") from None
