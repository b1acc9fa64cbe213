"""Images decoded once: a uint8 cache of a file-backed dataset's images after the resize step.

The first run decodes every used JPEG/PNG, resizes it exactly as the transforms would (the same
torchvision call), and writes the pixels to one flat memory-mapped file; later epochs and runs read
the pixels instead of decoding. The transforms still run their Resize, which is a no-op on an image
already at that size, so a cached run sees bit-identical pixels (a test checks it).

A cache is keyed by the rows' file paths, sizes and modification times, the resize size and rule,
and this format's version: a changed file list, file or size selects another cache. A cache is
trusted only after its index, byte count and BLAKE2 checksum are checked; a damaged one is rebuilt
with a message. Writes are atomic (built in a temporary folder, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .raw import FileSource

FORMAT_VERSION = 1
_CHUNK = 512  # images decoded per round of the thread pool
_HASH_BLOCK = 1 << 24


def cache_root(setting: str) -> Path | None:
    """The folder behind ``--data-cache``: None for "off"; "auto" is $ABRL_CACHE_DIR, else
    $XDG_CACHE_HOME/abrl/images, else ~/.cache/abrl/images."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    if os.environ.get("ABRL_CACHE_DIR"):
        return Path(os.environ["ABRL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "abrl" / "images"


@dataclass(eq=False)
class CachedSource:
    """An ImageSource over the cache of some rows of ``labels``'s source (others are absent)."""

    folder: Path
    labels: np.ndarray
    slots: np.ndarray  # source row -> slot in the cache, -1 when the row was not cached
    offsets: np.ndarray  # slot -> byte offset
    shapes: np.ndarray  # slot -> (height, width)
    _data: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:  # DataLoader workers reopen the map instead of copying it
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def _pixels(self) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")
        return self._data

    def image(self, index: int) -> Image.Image:
        slot = int(self.slots[index])
        if slot < 0:
            raise IndexError(f"row {index} is not in the image cache at {self.folder}")
        h, w = (int(v) for v in self.shapes[slot])
        start = int(self.offsets[slot])
        pixels = np.asarray(self._pixels()[start : start + h * w * 3]).reshape(h, w, 3)
        return Image.fromarray(pixels)


def cached_source(
    source: FileSource, rows: Sequence[int], resize: int, root: Path, log=None
) -> tuple[CachedSource, str]:
    """The cache of ``source``'s ``rows`` at shorter side ``resize`` (bilinear), built if needed.

    Returns the source and a one-line note of what happened (built, reused, rebuilt and why).
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    key = cache_key(source, rows, resize)
    folder = root / key
    problem = None
    if folder.exists():
        problem = _check(folder, key, len(rows))
        if problem is None:
            return _open(folder, source, rows), f"reused {folder}"
        log(f"image cache {folder} is damaged ({problem}); rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
    _build(source, rows, resize, root, folder, key, log)
    verb = "rebuilt" if problem else "built"
    return _open(folder, source, rows), f"{verb} {folder}"


def cache_key(source: FileSource, rows: np.ndarray, resize: int) -> str:
    """What the cached pixels depend on: the files (path, size, mtime), the resize, the format."""
    digest = hashlib.sha256()
    head = {"format": FORMAT_VERSION, "resize": resize, "rule": "shorter side, bilinear"}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for row in rows:
        path = source.paths[int(row)]
        st = os.stat(path)
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _decode(path: str, resize: int) -> np.ndarray:
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    # The exact call the transforms make (transforms.resize_size, bilinear, antialiased).
    return np.asarray(F.resize(rgb, resize, interpolation=InterpolationMode.BILINEAR))


def _decoded(paths: list[str], resize: int) -> Iterator[np.ndarray]:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
        for start in range(0, len(paths), _CHUNK):
            yield from pool.map(lambda p: _decode(p, resize), paths[start : start + _CHUNK])


def _build(source, rows, resize, root: Path, folder: Path, key: str, log) -> None:
    root.mkdir(parents=True, exist_ok=True)
    log(f"decoding {len(rows)} images once into the image cache {folder}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        offsets = np.zeros(len(rows), dtype=np.int64)
        shapes = np.zeros((len(rows), 2), dtype=np.int32)
        digest, offset = hashlib.blake2b(), 0
        with open(tmp / "pixels.u8", "wb") as out:
            paths = [source.paths[int(r)] for r in rows]
            for i, pixels in enumerate(_decoded(paths, resize)):
                data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
                offsets[i], shapes[i] = offset, pixels.shape[:2]
                out.write(data)
                digest.update(data)
                offset += len(data)
        np.save(tmp / "index.npy", np.concatenate([rows[:, None], offsets[:, None], shapes], 1))
        meta = {"format": FORMAT_VERSION, "key": key, "count": int(len(rows)), "bytes": offset,
                "blake2b": digest.hexdigest(), "resize": resize}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process (a torchrun rank) finished the same cache first
            if _check(folder, key, len(rows)) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check(folder: Path, key: str, count: int) -> str | None:
    """None when the cache at ``folder`` is whole, else what is wrong with it."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        index = np.load(folder / "index.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"cannot read its index: {str(exc).splitlines()[0]}"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
        return "its metadata does not match"
    if index.shape != (count, 4) or meta.get("count") != count:
        return f"it holds {len(index)} images, expected {count}"
    sizes = index[:, 2].astype(np.int64) * index[:, 3] * 3
    ends = index[:, 1] + sizes
    expected = int(meta.get("bytes", -1))
    if (sizes <= 0).any() or (index[1:, 1] != ends[:-1]).any() or int(ends[-1]) != expected:
        return "its index is inconsistent"
    pixels = folder / "pixels.u8"
    if not pixels.is_file() or pixels.stat().st_size != expected:
        return f"pixels.u8 is not {expected} bytes"
    digest = hashlib.blake2b()
    with open(pixels, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    if digest.hexdigest() != meta.get("blake2b"):
        return "the pixels' checksum does not match"
    return None


def _open(folder: Path, source: FileSource, rows: np.ndarray) -> CachedSource:
    index = np.load(folder / "index.npy", allow_pickle=False)
    slots = np.full(len(source), -1, dtype=np.int64)
    slots[index[:, 0]] = np.arange(len(index))
    return CachedSource(folder, source.labels, slots, index[:, 1].copy(), index[:, 2:].copy())
