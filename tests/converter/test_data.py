"""Loaders against real images in folders and archives, with corrupt, empty and mismatched data."""

from __future__ import annotations

import logging
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data import Dataset, check_same_classes, load_dataset, parse_size, stratified_sample, stratified_split, train_val
from converter.errors import DataError


def _write_tree(root: Path, ds: Dataset, per_class: int = 6, split: str = "train") -> Path:
    """Real CIFAR-10 images as PNG files in ``root/split/<class>/``."""
    for c, name in enumerate(ds.classes[:3]):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(ds.y == c)[:per_class]):
            cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(ds.x[idx], cv2.COLOR_RGB2BGR))
    return root


def test_folder_round_trip_is_lossless(tmp_path: Path, cifar10: Dataset) -> None:
    root = _write_tree(tmp_path / "tree", cifar10)
    ds = load_dataset(root, cache_dir=tmp_path / "cache")
    assert ds.classes == cifar10.classes[:3]
    assert ds.x.shape == (18, 32, 32, 3) and ds.counts() == {c: 6 for c in ds.classes}
    first = cifar10.x[np.flatnonzero(cifar10.y == 0)[0]]
    assert np.array_equal(ds.x[0], first)  # PNG keeps the pixels exactly, in RGB order


def test_cache_makes_the_second_load_identical(tmp_path: Path, cifar10: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_tree(tmp_path / "tree", cifar10)
    a = load_dataset(root, cache_dir=tmp_path / "cache")
    caplog.set_level(logging.INFO)
    b = load_dataset(root, cache_dir=tmp_path / "cache")
    assert "from cache" in caplog.text
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    # a changed tree is not served from a stale cache
    (root / "train" / a.classes[0] / "0.png").unlink()
    assert len(load_dataset(root, cache_dir=tmp_path / "cache")) == len(a) - 1


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archives_load_like_folders(tmp_path: Path, cifar10: Dataset, kind: str) -> None:
    root = _write_tree(tmp_path / "tree", cifar10, per_class=4)
    archive = tmp_path / f"data.{kind}"
    files = sorted(p for p in root.rglob("*.png"))
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            for f in files:
                z.write(f, f"data/{f.relative_to(root)}")
    else:
        with tarfile.open(archive, "w:gz") as t:
            for f in files:
                t.add(f, f"data/{f.relative_to(root)}")
    from_archive = load_dataset(archive, cache_dir=tmp_path / "cache")
    from_folder = load_dataset(root, cache_dir=tmp_path / "cache2")
    assert from_archive.classes == from_folder.classes
    assert np.array_equal(from_archive.x, from_folder.x)


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path: Path, cifar10: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_tree(tmp_path / "tree", cifar10)
    cls = cifar10.classes[1]
    (root / "train" / cls / "garbage.jpg").write_bytes(b"this is not an image")
    good = (root / "train" / cls / "0.png").read_bytes()
    (root / "train" / cls / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "train" / cls / "empty.jpg").write_bytes(b"")
    caplog.set_level(logging.WARNING)
    ds = load_dataset(root, cache_dir=tmp_path / "cache")
    assert ds.skipped == 3
    assert ds.counts()[cls] == 6
    assert "unreadable" in caplog.text


def test_empty_class_folder_is_an_error(tmp_path: Path, cifar10: Dataset) -> None:
    root = _write_tree(tmp_path / "tree", cifar10)
    (root / "train" / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def test_missing_path_and_mismatched_splits(tmp_path: Path, cifar10: Dataset) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")
    root = _write_tree(tmp_path / "tree", cifar10)
    _write_tree(root, cifar10, split="val")
    (root / "val" / cifar10.classes[2]).rename(root / "val" / "zebra")
    train = load_dataset(root, cache_dir=tmp_path / "c")
    val = load_dataset(root, "val", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="different classes"):
        check_same_classes(train, val)
    with pytest.raises(DataError, match="different classes"):
        train_val(root)


def test_mixed_sizes_need_image_size(tmp_path: Path, cifar10: Dataset) -> None:
    root = _write_tree(tmp_path / "tree", cifar10)
    big = cv2.resize(cifar10.x[0], (64, 48))
    cv2.imwrite(str(root / "train" / cifar10.classes[0] / "big.png"), big)
    with pytest.raises(DataError, match="--image-size"):
        load_dataset(root, cache_dir=tmp_path / "c")
    ds = load_dataset(root, image_size=(24, 24), cache_dir=tmp_path / "c")
    assert ds.image_shape == (24, 24, 3)


def test_fashion_mnist_from_the_debian_package(fashion_mnist_test: Dataset) -> None:
    ds = fashion_mnist_test
    assert ds.x.shape == (10000, 28, 28, 1) and ds.x.dtype == np.uint8
    assert len(ds.classes) == 10 and set(ds.counts().values()) == {1000}


def test_stratified_split_is_deterministic_and_disjoint(cifar10: Dataset) -> None:
    tr, va = stratified_split(cifar10.y, 0.1, seed=0)
    tr2, va2 = stratified_split(cifar10.y, 0.1, seed=0)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(cifar10)
    assert set(np.bincount(cifar10.y[va])) == {500}
    assert not np.array_equal(va, stratified_split(cifar10.y, 0.1, seed=1)[1])
    sample = stratified_sample(cifar10.y, 7)
    assert set(np.bincount(cifar10.y[sample])) == {7}


def test_parse_size() -> None:
    assert parse_size("96") == (96, 96) and parse_size("48x64") == (48, 64) and parse_size(None) is None
    with pytest.raises(DataError):
        parse_size("big")
