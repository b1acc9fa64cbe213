"""Helpers that read the text files of an on-disk layout and fail with the path and the layout."""

from __future__ import annotations

from pathlib import Path

from abrl_deploy.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def require_dir(path: Path, expected: str) -> Path:
    """``path`` if it is a directory, else a DatasetError naming it and the expected layout."""
    if not path.is_dir():
        raise DatasetError(f"{path} is not a directory; expected {expected}")
    return path


def require_file(path: Path, expected: str) -> Path:
    """``path`` if it is a file, else a DatasetError naming it and the expected layout."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing; expected {expected}")
    return path


def read_rows(
    path: Path, fields: int, expected: str, sep: str | None = None, maxsplit: int = -1
) -> list[list[str]]:
    """Non-blank lines of a text file split on ``sep`` (at most ``maxsplit`` times), each with at
    least ``fields`` non-empty fields; a malformed line raises with its file and line number."""
    require_file(path, expected)
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split(sep, maxsplit)
            if len(parts) < fields or not all(p.strip() for p in parts[:fields]):
                raise DatasetError(
                    f"{path}:{number}: malformed line {line.strip()!r}; expected {expected}"
                )
            rows.append([p.strip() for p in parts])
    if not rows:
        raise DatasetError(f"{path} is empty; expected {expected}")
    return rows


def parse_int(value: str, path: Path, what: str) -> int:
    """``int(value)``, or a DatasetError naming the file and the field."""
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{path}: {what} {value!r} is not an integer") from None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, by common extension."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def inside(folder: Path, name: str, index: Path) -> Path:
    """``folder / name`` for a file named in an index file, refused when it resolves outside
    ``folder`` (``../`` segments, an absolute path or a symlink): an index file is user input and
    must not make the loader read arbitrary files."""
    path = folder / name
    base = folder.resolve()
    if not path.resolve().is_relative_to(base):
        raise DatasetError(
            f"{index}: entry {name!r} points outside {folder}; an index file may only name files "
            "inside the dataset (fix or remove that line)"
        )
    return path


def dataset_root(data_dir: Path | None, subdir: str, expected: str) -> Path:
    """``data_dir / subdir``, checked to be a directory."""
    if data_dir is None:
        raise DatasetError(f"no data directory given; expected {expected}")
    return require_dir(Path(data_dir) / subdir, expected)
