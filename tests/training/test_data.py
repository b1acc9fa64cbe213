"""The dataset layer: official layouts, splits, transforms, errors and the safe unpickler."""

from __future__ import annotations

import builtins
import json
import os
import pickle
from pathlib import Path

import datafixtures
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from abrl_deploy.errors import DatasetError, UnsafePickleError
from abrl_deploy.training.data import DATASET_NAMES, DataSplits, load_dataset
from abrl_deploy.training.data.registry import get_dataset_spec, register_dataset


def _check_items(splits: DataSplits, size: int) -> None:
    for ds in (splits.train, splits.train_eval, splits.val, splits.test):
        x, y = ds[0]
        assert x.shape == (3, size, size) and x.dtype == torch.float32
        assert type(y) is int and 0 <= y < splits.num_classes


def _rows(ds) -> set[int]:
    return set(ds.indices.tolist())


def test_names_are_registered():
    assert DATASET_NAMES == ("cifar100", "cub200", "digits", "imagefolder", "tiny-imagenet")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(get_dataset_spec("cifar100"))


def test_unknown_name_lists_known():
    with pytest.raises(DatasetError, match="known datasets: cifar100, cub200, digits"):
        load_dataset("imagenet-21k", "/nowhere")


def test_cifar100_loads(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path, n_per_class=4, n_classes=5, test_per_class=2)
    splits = load_dataset("cifar100", data_dir)
    assert splits.class_names == tuple(f"fine_{c}" for c in range(5))
    assert splits.split_sizes == {"train": 18, "val": 2, "test": 10}
    assert splits.image_size == 32 and splits.mean == (0.5071, 0.4865, 0.4409)
    _check_items(splits, 32)
    assert splits.preprocessing["train_augmentation"] == [
        "RandomCrop(32, padding=4)",
        "RandomHorizontalFlip()",
    ]
    json.dumps(splits.preprocessing)

    # The eval transform must give back the pickled CHW pixels exactly.
    with open(data_dir / "cifar-100-python" / "test", "rb") as f:
        record = pickle.load(f, encoding="bytes")
    row = int(splits.test.indices[3])
    x, y = splits.test[3]
    mean, std = torch.tensor(splits.mean)[:, None, None], torch.tensor(splits.std)[:, None, None]
    expected = torch.from_numpy(record[b"data"][row].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(x * std + mean, expected, atol=1e-5, rtol=0)
    assert y == record[b"fine_labels"][row]


def test_cifar100_accepts_str_keys(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path, n_classes=3, str_keys=True, python2=False)
    assert load_dataset("cifar100", data_dir).num_classes == 3


def test_cifar100_missing_meta(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path)
    (data_dir / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DatasetError, match=r"meta is missing; expected .*cifar-100-python"):
        load_dataset("cifar100", data_dir)


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_System, _Exec])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, payload):
    data_dir = datafixtures.write_cifar100(tmp_path)
    marker = tmp_path / "marker"
    record = {b"data": payload(marker), b"fine_labels": [0]}
    with open(data_dir / "cifar-100-python" / "train", "wb") as f:
        pickle.dump(record, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"cifar-100-python/train: refused"):
        load_dataset("cifar100", data_dir)
    assert not marker.exists()


def test_corrupt_pickle_is_dataset_error(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path)
    (data_dir / "cifar-100-python" / "test").write_bytes(b"\x80\x02}q\x00")  # truncated
    with pytest.raises(DatasetError, match="cifar-100-python/test"):
        load_dataset("cifar100", data_dir)


def test_tiny_imagenet_loads_with_greyscale(tmp_path: Path):
    data_dir = datafixtures.write_tiny_imagenet(tmp_path, n_classes=3, n_per_class=4)
    splits = load_dataset("tiny-imagenet", data_dir, val_fraction=0.25)
    assert splits.class_names == ("thing 0", "thing 1", "thing 2")
    assert splits.split_sizes == {"train": 9, "val": 3, "test": 6}
    assert splits.test.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert splits.image_size == 64
    _check_items(splits, 64)
    source = splits.test.source
    assert source.paths[0].endswith("val_0.JPEG")  # saved greyscale
    assert source.image(0).mode == "RGB"
    assert splits.test[0][0].shape == (3, 64, 64)


def test_tiny_imagenet_errors(tmp_path: Path):
    data_dir = datafixtures.write_tiny_imagenet(tmp_path)
    annotations = data_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text("val_0.JPEG\n")
    with pytest.raises(DatasetError, match=r"val_annotations.txt:1: malformed line"):
        load_dataset("tiny-imagenet", data_dir)
    annotations.write_text("val_0.JPEG\tn77777777\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="n77777777"):
        load_dataset("tiny-imagenet", data_dir)


def _outside_image(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    return outside


def test_tiny_imagenet_refuses_an_annotation_outside_the_root(tmp_path: Path):
    data_dir = datafixtures.write_tiny_imagenet(tmp_path / "data")
    _outside_image(tmp_path)
    annotations = data_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    first = annotations.read_text().splitlines()[0].split("\t")
    wnid = first[1]
    escape = "../" * 4 + "outside.png"
    assert (annotations.parent / "images" / escape).resolve().is_file()  # it would load
    annotations.write_text(f"{escape}\t{wnid}\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="points outside"):
        load_dataset("tiny-imagenet", data_dir)


def test_cub200_refuses_an_image_path_outside_the_root(tmp_path: Path):
    data_dir = datafixtures.write_cub200(tmp_path / "data")
    outside = _outside_image(tmp_path)
    index = data_dir / "CUB_200_2011" / "images.txt"
    lines = index.read_text().splitlines()
    lines[0] = f"1 {outside}"  # an absolute path
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="images.txt: entry .* points outside"):
        load_dataset("cub200", data_dir)


def test_cub200_loads(tmp_path: Path):
    data_dir = datafixtures.write_cub200(tmp_path, n_classes=3, n_per_class=4)
    splits = load_dataset("cub200", data_dir, val_fraction=0.0)
    assert splits.class_names == ("Bird_0", "Bird_1", "Bird_2")
    assert splits.split_sizes == {"train": 6, "val": 0, "test": 6}
    assert sorted(splits.train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert splits.preprocessing["eval"]["resize"] == 256
    assert splits.preprocessing["eval"]["crop"] == 224
    assert splits.preprocessing["train_augmentation"][0] == "Resize(256)"
    x, y = splits.test[0]
    assert x.shape == (3, 224, 224) and type(y) is int


def test_cub200_malformed_line(tmp_path: Path):
    data_dir = datafixtures.write_cub200(tmp_path)
    path = data_dir / "CUB_200_2011" / "train_test_split.txt"
    path.write_text(path.read_text() + "oops\n")
    with pytest.raises(DatasetError, match=r"train_test_split.txt:13: malformed line 'oops'"):
        load_dataset("cub200", data_dir)


def test_imagefolder_loads(tmp_path: Path):
    data_dir = datafixtures.write_imagefolder(tmp_path, n_classes=3, n_per_class=4)
    splits = load_dataset("imagefolder", data_dir, image_size=48, val_fraction=0.25)
    assert splits.class_names == ("class_a", "class_b", "class_c")
    assert splits.split_sizes == {"train": 9, "val": 3, "test": 6}
    assert splits.preprocessing["eval"]["resize"] == round(48 * 256 / 224)
    _check_items(splits, 48)


@pytest.mark.parametrize("name", ["cifar100", "tiny-imagenet", "cub200", "imagefolder"])
def test_missing_dir_names_path_and_layout(tmp_path: Path, name: str):
    missing = tmp_path / "nothing-here"
    with pytest.raises(DatasetError, match="expected") as info:
        load_dataset(name, missing)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)


def test_data_dir_required_except_digits():
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("cifar100")


def test_val_is_carved_from_train_by_seed(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path, n_per_class=10, n_classes=4)
    a = load_dataset("cifar100", data_dir, seed=1, val_fraction=0.2)
    b = load_dataset("cifar100", data_dir, seed=1, val_fraction=0.2)
    c = load_dataset("cifar100", data_dir, seed=2, val_fraction=0.2)
    assert a.split_sizes == {"train": 32, "val": 8, "test": 8}
    assert not _rows(a.train) & _rows(a.val)
    assert _rows(a.train) | _rows(a.val) == set(range(40))
    assert np.bincount(a.val.labels).tolist() == [2, 2, 2, 2]  # stratified
    assert _rows(a.val) == _rows(b.val) and _rows(a.val) != _rows(c.val)
    assert _rows(a.train_eval) == _rows(a.train)


def test_limit_and_views(tmp_path: Path):
    data_dir = datafixtures.write_cifar100(tmp_path, n_per_class=10, n_classes=4)
    splits = load_dataset("cifar100", data_dir, limit=12)
    assert splits.split_sizes["train"] + splits.split_sizes["val"] == 12
    assert splits.split_sizes["test"] == 8
    view = splits.train_views(T.Compose([T.Grayscale(3), T.ToTensor()]))
    assert len(view) == len(splits.train) and view[0][0].shape == (3, 32, 32)


def test_picklable_and_batches(tmp_path: Path):
    data_dir = datafixtures.write_tiny_imagenet(tmp_path)
    splits = pickle.loads(pickle.dumps(load_dataset("tiny-imagenet", data_dir, image_size=32)))
    x, y = next(iter(torch.utils.data.DataLoader(splits.train, batch_size=4, num_workers=0)))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64


def test_digits():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=7)
    assert sum(a.split_sizes.values()) == 1797
    assert a.split_sizes["test"] == 360 and a.num_classes == 10
    assert a.preprocessing["train_augmentation"] == ["RandomCrop(32, padding=4)"]  # no flips
    _check_items(a, 32)
    assert np.array_equal(a.test.labels, b.test.labels)
    torch.testing.assert_close(a.test[5][0], b.test[5][0])  # the same test images every run
    assert _rows(a.val) != _rows(b.val)
    assert load_dataset("digits", image_size=16).test[0][0].shape == (3, 16, 16)
