"""A strict name → Method registry: a duplicate raises, an unknown name lists the known ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from abrl_deploy.errors import ConfigError

from .base import Method

M = TypeVar("M", bound=type[Method])
_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[M], M]:
    def add(cls: M) -> M:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__name__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def method_names() -> tuple[str, ...]:
    return tuple(sorted(_METHODS))


def get_method(name: str) -> type[Method]:
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(method_names())}")
    return _METHODS[name]
