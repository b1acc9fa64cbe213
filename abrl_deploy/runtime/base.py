"""The Runner protocol: open/close as a context manager, ``infer`` checks input once, the backend
does the work in ``infer_impl`` (Polygraphy's Runner activate/infer shape). A runner opens its
artifact's path itself: there is no separate loader object.

For timing, ``stage`` does the checks and host-side conversions once, outside the clock, and
``run_staged`` is the one call that is timed: host input in, host outputs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from abrl_deploy.errors import AbrlError


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str | None, ...]  # None or a name for a dynamic axis
    dtype: np.dtype


class Runner:
    """One model on one backend. Subclasses set ``backend`` and implement the ``*_impl`` hooks."""

    backend = "abstract"  # its name in the backend table (backends.py), which says the rest

    def __init__(self) -> None:
        self._open = False

    def __enter__(self) -> Runner:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        if not self._open:
            self.open_impl()
            self._open = True

    def close(self) -> None:
        if self._open:
            self.close_impl()
            self._open = False

    @property
    def input_spec(self) -> InputSpec:
        raise NotImplementedError

    @property
    def output_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch; returns every output by name."""
        return self.run_staged(self.stage(batch))

    def stage(self, batch: np.ndarray) -> Any:
        """Check ``batch`` and convert it to what ``run_staged`` takes (outside any timing)."""
        if not self._open:
            raise AbrlError(f"{self.backend} runner is not open; use it as a context manager")
        self._check(batch)
        return self.stage_impl(batch)

    def run_staged(self, staged: Any) -> dict[str, np.ndarray]:
        """The timed call: one batch from host memory to host outputs, synchronised."""
        return self.infer_impl(staged)

    def describe(self) -> dict[str, Any]:
        """Where this runner actually runs (providers in use, device, threads), for reports."""
        return {"backend": self.backend}

    def _check(self, batch: np.ndarray) -> None:
        spec = self.input_spec
        if not isinstance(batch, np.ndarray) or batch.dtype != spec.dtype:
            got = getattr(batch, "dtype", type(batch).__name__)
            raise AbrlError(f"input {spec.name!r}: got {got}, expected a numpy {spec.dtype} array")
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if batch.ndim != len(spec.shape) or any(batch.shape[i] != d for i, d in fixed):
            raise AbrlError(
                f"input {spec.name!r}: got shape {batch.shape}, expected {_fmt(spec.shape)}"
            )

    def open_impl(self) -> None:
        raise NotImplementedError

    def close_impl(self) -> None:
        pass

    def stage_impl(self, batch: np.ndarray) -> Any:
        return np.ascontiguousarray(batch)

    def infer_impl(self, staged: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _fmt(shape: tuple) -> str:
    return "[" + ", ".join("N" if not isinstance(d, int) else str(d) for d in shape) + "]"
