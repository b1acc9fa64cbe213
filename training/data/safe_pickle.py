"""A restricted unpickler for the CIFAR python pickles: numpy arrays, lists, dicts, bytes only.

A pickle can run any importable callable while it loads; these files come from the user's disk,
so every global they name is checked against the few that a numpy array needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from abrl_deploy.errors import DatasetError, UnsafePickleError

_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
_NAMES = ("_reconstruct", "ndarray", "dtype", "scalar")
# What a truncated or corrupt pickle raises while loading.
_READ_ERRORS = (
    OSError,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
)


def _multiarray() -> Any:
    # numpy 2 moved numpy.core to numpy._core (the old name warns); resolve to whichever exists.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` for Python 3's protocol-2 ``bytes`` (``encode(str, 'latin1')``) only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module in _MODULES and name in _NAMES:
            return getattr(_multiarray(), name)
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes into protocol-2 pickles (a numpy array's buffer, the bytes
            # keys) as _codecs.encode(str, 'latin1'); Python 2 originals never need it.
            return _latin1_encode
        raise UnsafePickleError(
            f"{self._path}: refused to unpickle {module}.{name}; this file may only hold numpy "
            "arrays, lists, dicts and bytes (the official CIFAR python format)"
        )


def load_safe_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays and plain containers (bytes-keyed Python 2
    pickles load with ``encoding='bytes'``)."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except UnsafePickleError as exc:
        if str(path) in str(exc):
            raise
        raise UnsafePickleError(f"{path}: {exc}") from exc
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read this pickle ({exc})") from exc
