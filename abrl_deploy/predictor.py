"""``Predictor``: an exported model and its card, for services. Torch-free.

    from abrl_deploy import Predictor
    with Predictor("runs/abrl/model.onnx") as p:
        print(p.predict("cat.jpg", top_k=3))

One runtime session serves every thread; a runner that is not thread-safe (the backend table's
``thread_safe``: a TensorRT execution context, an OpenVINO infer request) has its calls
serialised with a lock.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.artifacts import sidecar
from abrl_deploy.card import ModelCard
from abrl_deploy.compare import run_batches
from abrl_deploy.deploy_record import deploy_choice
from abrl_deploy.errors import ConfigError, RuntimeBackendError
from abrl_deploy.preprocess import Preprocessor
from abrl_deploy.runtime.backends import (
    AUTO_ORDER,
    SERVING_BACKENDS,
    TABLE,
    make_runner,
    unavailable_reason,
)

BACKENDS = ("auto", *SERVING_BACKENDS)


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, best first."""

    labels: tuple[str, ...]
    class_ids: tuple[int, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "class_ids": list(self.class_ids),
                "probabilities": list(self.probabilities)}  # fmt: skip


class Predictor:
    """Load ``path`` (an exported ``.onnx`` with its embedded card, or a TensorRT ``.engine`` with
    its ``.engine.json`` sidecar) on ``backend``. ``auto`` runs a file written by ``abrl
    optimize`` (``model.deploy.onnx``) the way it chose on this CPU; otherwise, and on another
    CPU, it picks TensorRT EP, CUDA EP, then CPU.

    ``card`` (a ModelCard or a card JSON file, e.g. from ``abrl bench --save-card``) runs a model
    without an embedded card; it is refused for a model that has one.
    """

    def __init__(
        self, path: str | Path, backend: str = "auto", threads: int | None = None,
        batch_size: int = 64, card: ModelCard | str | Path | None = None,
    ):  # fmt: skip
        self.path = Path(path)
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is unknown; valid: {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be >= 1")
        self.batch_size = batch_size
        self._runner, self.backend, self.skipped = _open(self.path, backend, threads)
        try:
            self.card = _card(self._runner, self.path, card)
            self.choice = self._apply_choice(threads) if backend == "auto" else None
        except Exception:
            self._runner.close()
            raise
        self.preprocess = Preprocessor(self.card)
        serial = not TABLE[self.backend].thread_safe
        self._lock = threading.Lock() if serial else contextlib.nullcontext()
        self.outputs = self._runner.output_names

    def _apply_choice(self, threads: int | None) -> dict[str, Any] | None:
        """``auto`` on a file shipped by ``abrl optimize``: its measured choice, where it was
        measured on this CPU and its backend can run here (otherwise the reason is kept)."""
        choice, why = deploy_choice(self.card)
        if choice is None:
            return self._set_aside(why)
        backend, ov = choice["backend"], choice.get("ov_precision") or "auto"
        reason = unavailable_reason(backend)
        if reason is not None:
            return self._set_aside(f"abrl optimize's choice {backend}: {reason}")
        if backend != self.backend or ov != "auto":
            # the threads it was timed with, unless the caller names some
            threads = threads if threads is not None else choice.get("threads")
            runner = make_runner(backend, self.path, threads=threads, ov_precision=ov)
            try:
                runner.open()
            except RuntimeBackendError as exc:  # auto keeps what really runs
                return self._set_aside(f"abrl optimize's choice {backend}: {exc}")
            self._runner.close()
            self._runner, self.backend = runner, backend
        return choice

    def _set_aside(self, why: str | None) -> None:
        """A recorded choice not followed (None: the file has none); the reason is kept."""
        self._aside = why
        if why:
            self.skipped.append(why)

    @property
    def backend_note(self) -> str | None:
        """One line on why this backend runs the model when a recorded choice was involved."""
        if self.choice:
            precision = self.choice.get("runtime_precision") or "unrecorded"
            return f"{self.backend} ({precision}): abrl optimize's choice on this CPU"
        return getattr(self, "_aside", None)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._runner.close()

    def describe(self) -> dict[str, Any]:
        """Where the model runs (backend, providers in use) — for logs and ``GET /v1/model``."""
        chosen = {"chosen_by": {"tool": "abrl optimize", **self.choice}} if self.choice else {}
        return {"path": str(self.path), **self._runner.describe(), **chosen}

    def logits(self, images: Any) -> np.ndarray:
        """Logits [N, num_classes] as float32."""
        return self._outputs(images, "logits")

    def embed(self, images: Any) -> np.ndarray:
        """The encoder's features [N, D]; the model must be exported with them."""
        if "features" not in self.outputs:
            raise ConfigError(
                f"{self.path} has no 'features' output; export it with "
                "abrl export RUN_DIR --outputs logits,features"
            )
        return self._outputs(images, "features")

    def predict(self, images: Any, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` classes of each image with softmax probabilities."""
        if top_k < 1:
            raise ConfigError(f"top_k {top_k} must be >= 1")
        logits = self.logits(images).astype(np.float64)
        k = min(top_k, logits.shape[1])
        z = np.exp(logits - logits.max(1, keepdims=True))
        probs = z / z.sum(1, keepdims=True)
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        names = self.card.class_names
        return [Prediction(tuple(names[i] for i in row), tuple(int(i) for i in row),
                           tuple(float(probs[n, i]) for i in row))
                for n, row in enumerate(order)]  # fmt: skip

    def _outputs(self, images: Any, name: str) -> np.ndarray:
        x = self.preprocess(images)
        if self.card.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        out = run_batches(self._infer, x, self.batch_size)[name]
        return out.astype(np.float32, copy=False)

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            return self._runner.infer(x)


def _open(path: Path, backend: str, threads: int | None):
    """The open runner, its backend, and why better ``auto`` choices were passed over.

    ``auto`` tries TensorRT EP, CUDA EP, then CPU, and moves on when one cannot run here
    (onnxruntime-gpu lists CUDA even without a GPU; the runner then refuses the CPU fallback).
    A backend named by the caller that cannot run is an error, never a fallback.
    """
    if not path.is_file():
        hint = f"; export it first: abrl export {path}" if path.is_dir() else ""
        raise ConfigError(f"{path} is not a model file (.onnx or .engine){hint}")
    engine = path.suffix == ".engine"
    if engine and backend not in ("auto", "trt"):
        raise ConfigError(f"{path} is a TensorRT engine; use backend 'trt' (or 'auto')")
    if not engine and backend == "trt":
        raise ConfigError(f"{path} is an ONNX file; backend 'trt' runs engines (.engine)")
    candidates = ("trt",) if engine else (AUTO_ORDER if backend == "auto" else (backend,))
    skipped: list[str] = []
    for name in candidates:
        reason = unavailable_reason(name)
        if reason is None:
            runner = make_runner(name, path, threads=threads)
            try:
                runner.open()
                return runner, name, skipped
            except RuntimeBackendError as exc:
                if backend != "auto" or name == candidates[-1]:
                    raise
                reason = str(exc)
        if backend != "auto":
            raise RuntimeBackendError(f"backend {name} cannot run here: {reason}")
        skipped.append(f"{name}: {reason}")
    raise RuntimeBackendError(f"cannot run {path} here: " + "; ".join(skipped))


def _card(runner, path: Path, given: ModelCard | str | Path | None) -> ModelCard:
    """The card embedded in the ONNX file, the engine's sidecar, or the one given for a model
    without either."""
    if given is not None:
        embedded = path.suffix != ".engine" and ModelCard.from_onnx_metadata(runner.metadata)
        if embedded or path.suffix == ".engine":
            raise ConfigError(
                f"{path} carries its own model card; drop card= (--card): it is for models "
                "without one"
            )
        return given if isinstance(given, ModelCard) else ModelCard.load(given)
    if path.suffix == ".engine":
        card_file = sidecar(path)
        if not card_file.is_file():
            raise ConfigError(f"{card_file} is missing: an engine's model card is its sidecar JSON")
        return ModelCard.load(card_file)
    card = ModelCard.from_onnx_metadata(runner.metadata)
    if card is None:
        raise ConfigError(
            f"{path} has no abrl model card (metadata 'abrl.card'); export it with abrl export, "
            "or give its preprocessing as a card (abrl bench --save-card, then --card)"
        )
    return card
