"""The strict dataset registry: a duplicate name raises, an unknown name lists the known ones."""

from __future__ import annotations

from abrl_deploy.errors import DatasetError

from .raw import DatasetSpec

_SPECS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` under ``spec.name``; registering a name twice is a programming error."""
    if spec.name in _SPECS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``, or a DatasetError listing the known names."""
    try:
        return _SPECS[name]
    except KeyError:
        known = ", ".join(dataset_names())
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def dataset_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_SPECS))
