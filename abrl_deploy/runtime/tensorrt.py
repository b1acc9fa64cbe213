"""TensorRT runner: a serialized engine from ``abrl export --format trt``, for TensorRT 10 and 11.

UNVERIFIED: this module has not been run against a real TensorRT. It was written on a machine
without TensorRT or a GPU, against TensorRT's name-based tensor API (``num_io_tensors``,
``get_tensor_name``/``mode``/``dtype``/``shape``/``profile_shape``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) as documented for 10.x and kept in 11.x. Only the
pure helpers below are covered by CPU tests; the end-to-end test is marked ``tensorrt`` and runs
only where TensorRT and a CUDA device are present.

Device buffers and the stream are torch CUDA tensors and a ``torch.cuda.Stream`` (torch is
installed wherever this runs on a GPU). The timed call (``run_staged``) copies the pinned host
batch to the device, runs the engine and copies the outputs back, and ends synchronised, so it
measures what the other runners measure; the device time from the host-to-device copy to the end
of the engine (CUDA events, as in the torch runner) is kept as ``last_device_ms``.

An engine only runs on the TensorRT version and GPU model that built it; the model card travels
beside it in ``<engine>.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abrl_deploy.artifacts import sidecar
from abrl_deploy.card import ModelCard
from abrl_deploy.errors import AbrlError, DependencyError, RuntimeBackendError, first_line

from .base import InputSpec, Runner
from .trt_support import make_logger, require_tensorrt

# TensorRT DataType member names to numpy; BF16, FP8, INT4 and FP4 have no numpy type.
_NUMPY_TYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}
_REBUILD = (
    "an engine only runs on the TensorRT version and GPU model that built it: rebuild it here "
    "with abrl export RUN_DIR --format trt"
)


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a TensorRT ``DataType`` (or its member name, e.g. ``"HALF"``)."""
    name = trt_dtype if isinstance(trt_dtype, str) else getattr(trt_dtype, "name", None)
    name = str(name if name is not None else trt_dtype).rsplit(".", 1)[-1]
    if name not in _NUMPY_TYPES:
        raise RuntimeBackendError(
            f"TensorRT tensor type {name} has no numpy equivalent; the runner handles "
            f"{', '.join(_NUMPY_TYPES)}"
        )
    return np.dtype(_NUMPY_TYPES[name])


def split_io(tensors: Iterable[tuple[str, bool]]) -> tuple[str, tuple[str, ...]]:
    """``(name, is_input)`` of every I/O tensor → the one input and the outputs, in engine order."""
    tensors = list(tensors)
    inputs = [name for name, is_input in tensors if is_input]
    outputs = tuple(name for name, is_input in tensors if not is_input)
    if len(inputs) != 1 or not outputs:
        raise RuntimeBackendError(
            f"engine has inputs {inputs} and outputs {list(outputs)}; the TensorRT runner needs "
            "one image input and at least one output, as abrl export builds"
        )
    return inputs[0], outputs


def spec_shape(dims: Iterable[int]) -> tuple[int | None, ...]:
    """An engine shape (``-1`` for a dynamic axis) as an ``InputSpec`` shape (``None``)."""
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def check_batch_in_profile(batch: int, min_shape: Sequence[int], max_shape: Sequence[int]) -> None:
    """Raise ``RuntimeBackendError`` unless ``batch`` is inside the profile's batch axis."""
    lo, hi = int(min_shape[0]), int(max_shape[0])
    if not lo <= batch <= hi:
        raise RuntimeBackendError(
            f"batch {batch} is outside the engine's optimisation profile (batch {lo} to {hi}); "
            f"send batches of {lo} to {hi} images, or re-export with --batch-range MIN,OPT,MAX "
            f"covering {batch}"
        )


def _one_line(messages: Sequence[str]) -> str:
    """The last few TensorRT log errors, first line of each, as one line."""
    return "; ".join((m.strip().splitlines() or [""])[0][:300] for m in messages[-3:])


def _load_card(path: Path) -> ModelCard | None:
    """The card ``abrl export`` wrote beside the engine; None for an engine built elsewhere."""
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path)
    except AbrlError as exc:
        raise RuntimeBackendError(f"model card {path}: {exc}") from None


def _import_torch():
    try:
        import torch
    except ImportError:
        raise DependencyError(
            "the TensorRT runner keeps its device buffers in torch CUDA tensors and PyTorch is "
            "not installed; run pip install 'abrl[train]' with a CUDA build of torch"
        ) from None
    return torch


class TrtRunner(Runner):
    """The serialized TensorRT engine at ``engine_path`` on CUDA device ``device_index``."""

    backend = "trt"

    def __init__(self, engine_path: str | Path, device_index: int = 0):
        super().__init__()
        self.engine_path, self.device_index = Path(engine_path), device_index
        self.card: ModelCard | None = None
        self.last_device_ms: float | None = None
        self._trt = self._torch = None
        self._logger = self._runtime = self._engine = self._context = None
        self._stream = self._events = None
        self._input = ""
        self._input_shape: tuple[int, ...] = ()
        self._input_dtype = np.dtype(np.float32)
        self._profile: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self._outputs: tuple[str, ...] = ()
        self._dtypes: dict[str, Any] = {}  # tensor name -> torch dtype
        self._buffers: dict[str, Any] = {}  # tensor name -> flat device tensor, grown on demand

    # --- open / close ---------------------------------------------------------------------------

    def open_impl(self) -> None:
        trt = require_tensorrt()
        torch = _import_torch()
        if not torch.cuda.is_available():
            raise RuntimeBackendError(
                "trt: torch.cuda.is_available() is False, and the runner needs a CUDA build of "
                "torch for its device buffers; check nvidia-smi and the installed torch wheel"
            )
        if not 0 <= self.device_index < torch.cuda.device_count():
            raise RuntimeBackendError(
                f"trt: CUDA device {self.device_index} does not exist here "
                f"({torch.cuda.device_count()} visible); check CUDA_VISIBLE_DEVICES"
            )
        if not self.engine_path.is_file():
            raise RuntimeBackendError(
                f"no TensorRT engine at {self.engine_path}; build one with "
                "abrl export RUN_DIR --format trt"
            )
        self.card = _load_card(sidecar(self.engine_path))
        self._trt, self._torch = trt, torch
        try:
            with torch.cuda.device(self.device_index):
                self._load_engine(trt)
                self._read_io(trt, torch)
                self._stream = torch.cuda.Stream()
                self._events = tuple(torch.cuda.Event(enable_timing=True) for _ in range(2))
        except BaseException:
            self.close_impl()  # open() failed, so close() will not release what was made
            raise

    def _load_engine(self, trt) -> None:
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)  # kept: it must outlive the engine
        detail = ""
        try:
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        except Exception as exc:
            engine, detail = None, first_line(exc)
        if engine is None:  # deserialize_cuda_engine returns None on failure
            said = _one_line(self._logger.errors) or detail or "no error was logged"
            raise RuntimeBackendError(
                f"TensorRT {trt.__version__} cannot load {self.engine_path} ({said}); {_REBUILD}"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            said = _one_line(self._logger.errors) or "no error was logged"
            raise RuntimeBackendError(
                f"TensorRT could not create an execution context for {self.engine_path} ({said}); "
                "check the free GPU memory"
            )

    def _read_io(self, trt, torch) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT) for n in names]
        self._input, self._outputs = split_io(modes)
        numpy_types = {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names}
        self._dtypes = {n: torch.from_numpy(np.empty(0, t)).dtype for n, t in numpy_types.items()}
        self._input_dtype = numpy_types[self._input]
        self._input_shape = tuple(int(d) for d in engine.get_tensor_shape(self._input))
        self._profile = None
        if self._input_shape and self._input_shape[0] < 0:  # dynamic batch: profile 0 bounds it
            lo, _opt, hi = engine.get_tensor_profile_shape(self._input, 0)
            self._profile = (tuple(int(d) for d in lo), tuple(int(d) for d in hi))

    def close_impl(self) -> None:
        # The context before the engine before the runtime, as TensorRT requires.
        self._context = None
        self._engine = None
        self._runtime = None
        self._buffers = {}
        self._stream = self._events = None

    # --- description ----------------------------------------------------------------------------

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self._input, spec_shape(self._input_shape), self._input_dtype)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def batch_range(self) -> tuple[int, int] | None:
        """(min, max) batch of the engine's optimisation profile; None for a fixed batch."""
        return None if self._profile is None else (self._profile[0][0], self._profile[1][0])

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": self.backend,
            "tensorrt": self._trt.__version__,
            "gpu": self._torch.cuda.get_device_name(self.device_index),
            "device_index": self.device_index,
            "engine": str(self.engine_path),
            "batch_range": self.batch_range,
        }
        if self.card is not None and self.card.export:
            info["precision"] = self.card.export.get("precision")
            info["built_with_tensorrt"] = self.card.export.get("tensorrt")
        return info

    # --- inference ------------------------------------------------------------------------------

    def stage_impl(self, batch: np.ndarray):
        """Check the batch against the profile and pin a host copy (outside any timing)."""
        if self._profile is not None:
            check_batch_in_profile(batch.shape[0], *self._profile)
        return self._torch.from_numpy(np.ascontiguousarray(batch)).pin_memory()

    def infer_impl(self, staged) -> dict[str, np.ndarray]:
        torch = self._torch
        try:
            with torch.cuda.device(self.device_index), torch.cuda.stream(self._stream):
                return self._run(staged)
        except RuntimeBackendError:
            raise
        except Exception as exc:
            raise RuntimeBackendError(
                f"trt failed on {self.engine_path}: {first_line(exc)}"
            ) from None

    def _run(self, host) -> dict[str, np.ndarray]:
        context, stream = self._context, self._stream
        start, end = self._events
        self._logger.errors.clear()  # so a failure below quotes only its own errors
        shape = tuple(host.shape)
        start.record(stream)
        x = self._buffer(self._input, shape)
        x.copy_(host, non_blocking=True)
        if not context.set_input_shape(self._input, shape):
            raise RuntimeBackendError(
                f"TensorRT refused input shape {list(shape)} for {self._input!r} of "
                f"{self.engine_path}: {_one_line(self._logger.errors) or 'no error was logged'}"
            )
        self._bind(self._input, x)
        outputs = {}
        for name in self._outputs:
            out_shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in out_shape):
                raise RuntimeBackendError(
                    f"output {name!r} of {self.engine_path} has a data-dependent shape "
                    f"{list(out_shape)}; the TensorRT runner supports shapes known from the input"
                )
            outputs[name] = self._buffer(name, out_shape)
            self._bind(name, outputs[name])
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeBackendError(
                f"TensorRT failed to run {self.engine_path}: "
                f"{_one_line(self._logger.errors) or 'no error was logged'}"
            )
        end.record(stream)
        result = {name: y.cpu().numpy() for name, y in outputs.items()}  # waits for the stream
        stream.synchronize()
        self.last_device_ms = start.elapsed_time(end)
        return result

    def _bind(self, name: str, tensor) -> None:
        if not self._context.set_tensor_address(name, tensor.data_ptr()):
            raise RuntimeBackendError(
                f"TensorRT refused the device address of {name!r} of {self.engine_path}: "
                f"{_one_line(self._logger.errors) or 'no error was logged'}"
            )

    def _buffer(self, name: str, shape: tuple[int, ...]):
        """A device tensor of ``shape`` for ``name``, reusing its buffer when that is big enough."""
        numel = int(np.prod(shape, dtype=np.int64))
        flat = self._buffers.get(name)
        if flat is None or flat.numel() < numel:
            torch = self._torch
            device = torch.device("cuda", self.device_index)
            flat = torch.empty(max(numel, 1), dtype=self._dtypes[name], device=device)
            self._buffers[name] = flat
        return flat[:numel].view(shape)
