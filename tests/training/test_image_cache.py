"""The decoded-image cache: the pixels a run sees are the ones it would decode, and a cache that
does not match the files, the size or its own checksum is never used."""

from __future__ import annotations

import pickle
from pathlib import Path

import datafixtures
import numpy as np
import pytest
import torch
from PIL import Image

from abrl_deploy.training.data import cache as image_cache
from abrl_deploy.training.data import load_dataset
from abrl_deploy.training.data.raw import FileSource


def tensors(dataset, seed: int = 0) -> list[torch.Tensor]:
    """Every row of ``dataset``, each drawn after the same reseed (so random crops match)."""
    out = []
    for i in range(len(dataset)):
        torch.manual_seed(seed + i)
        out.append(dataset[i][0])
    return out


def assert_same_pixels(a, b) -> None:
    for split in ("train", "train_eval", "val", "test"):
        for x, y in zip(tensors(getattr(a, split)), tensors(getattr(b, split)), strict=True):
            assert torch.equal(x, y), split


def folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("name", ["tiny-imagenet", "imagefolder"])
@pytest.mark.parametrize("augment", [False, True])
def test_cached_pixels_are_the_decoded_ones(tmp_path, name, augment):
    """Greyscale JPEGs, PNGs, non-square images; with and without the random augmentation."""
    write = (
        datafixtures.write_tiny_imagenet
        if name == "tiny-imagenet"
        else datafixtures.write_imagefolder
    )
    data = write(tmp_path / "data")
    kw = dict(val_fraction=0.25, image_size=12, augment=augment)
    plain = load_dataset(name, data, cache="off", **kw)
    cached = load_dataset(name, data, cache=str(tmp_path / "cache"), **kw)
    assert isinstance(cached.train.source, image_cache.CachedSource)
    assert "built" in cached.cache_note and plain.cache_note == "off"
    assert_same_pixels(plain, cached)
    again = load_dataset(name, data, cache=str(tmp_path / "cache"), **kw)
    assert "reused" in again.cache_note and "built" not in again.cache_note


def test_later_epochs_decode_nothing(tmp_path, monkeypatch):
    data = datafixtures.write_tiny_imagenet(tmp_path / "data")
    splits = load_dataset("tiny-imagenet", data, cache=str(tmp_path / "cache"), image_size=12)

    def no_decoding(self, index):
        raise AssertionError("decoded a file although the cache holds it")

    monkeypatch.setattr(FileSource, "image", no_decoding)
    assert len(tensors(splits.train)) == len(splits.train) and len(tensors(splits.test))


def test_another_size_never_reuses_the_cache(tmp_path):
    """A cache built at 12 px read for a 20 px run would upsample 12 px pixels: it must not be."""
    data = datafixtures.write_tiny_imagenet(tmp_path / "data")
    root = tmp_path / "cache"
    load_dataset("tiny-imagenet", data, cache=str(root), image_size=12)
    assert len(folders(root)) == 2  # the train pool's and the test split's
    big = load_dataset("tiny-imagenet", data, cache=str(root), image_size=20)
    assert len(folders(root)) == 4 and "reused" not in big.cache_note
    assert_same_pixels(load_dataset("tiny-imagenet", data, cache="off", image_size=20), big)


def test_a_changed_image_file_selects_a_new_cache(tmp_path):
    data = datafixtures.write_imagefolder(tmp_path / "data")
    root = tmp_path / "cache"
    load_dataset("imagefolder", data, cache=str(root), image_size=12)
    path = data / "train" / "class_a" / "0.png"
    Image.new("RGB", (18, 12), (255, 0, 0)).save(path)
    changed = load_dataset("imagefolder", data, cache=str(root), image_size=12)
    assert "train pool: built" in changed.cache_note
    assert_same_pixels(load_dataset("imagefolder", data, cache="off", image_size=12), changed)


@pytest.mark.parametrize("damage", ["flip a pixel byte", "truncate pixels", "drop the index"])
def test_a_damaged_cache_is_rebuilt_with_a_message(tmp_path, capsys, damage):
    data = datafixtures.write_tiny_imagenet(tmp_path / "data")
    root = tmp_path / "cache"
    load_dataset("tiny-imagenet", data, cache=str(root), image_size=12)
    folder = folders(root)[0]
    pixels = folder / "pixels.u8"
    if damage == "flip a pixel byte":
        raw = bytearray(pixels.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        pixels.write_bytes(bytes(raw))
    elif damage == "truncate pixels":
        pixels.write_bytes(pixels.read_bytes()[:-7])
    else:
        (folder / "index.npy").unlink()
    capsys.readouterr()
    again = load_dataset("tiny-imagenet", data, cache=str(root), image_size=12)
    err = capsys.readouterr().err
    assert f"image cache {folder} is damaged" in err and "rebuilding" in err
    assert "rebuilt" in again.cache_note
    assert_same_pixels(load_dataset("tiny-imagenet", data, cache="off", image_size=12), again)


def test_workers_get_the_cache_by_path_not_by_copy(tmp_path):
    data = datafixtures.write_tiny_imagenet(tmp_path / "data", n_per_class=20)
    splits = load_dataset("tiny-imagenet", data, cache=str(tmp_path / "cache"), image_size=12)
    source = splits.train.source
    source.image(int(splits.train.indices[0]))  # opens the memory map
    clone = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 4096 and clone._data is None
    row = int(splits.train.indices[1])
    assert np.array_equal(np.asarray(clone.image(row)), np.asarray(source.image(row)))


def test_cache_root_follows_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("ABRL_CACHE_DIR", str(tmp_path / "env"))
    assert image_cache.cache_root("auto") == tmp_path / "env"
    assert image_cache.cache_root("off") is None
    assert image_cache.cache_root(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("ABRL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_root("auto") == tmp_path / "xdg" / "abrl" / "images"
