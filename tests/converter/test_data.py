"""Loaders against real images in folders and archives, with corrupt, empty and mismatched data."""

from __future__ import annotations

import logging
import os
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import (
    Dataset,
    check_same_classes,
    load_dataset,
    parse_bytes,
    parse_size,
    peek_image_size,
    stratified_sample,
    stratified_split,
    train_val,
)
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


@pytest.fixture(scope="module")
def photos(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Five real dogs-vs-cats training photos of each class, as files (read from the shared archive)."""
    out = tmp_path_factory.mktemp("photos")
    found: dict[str, list[Path]] = {"cat": [], "dog": []}
    with tarfile.open(shared_datasets / "cats-vs-dogs.tar.gz") as tf:
        for member in tf:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == "train" and len(found.get(parts[1], [1] * 5)) < 5:
                fh = tf.extractfile(member)
                assert fh is not None
                path = out / parts[2]
                path.write_bytes(fh.read())
                found[parts[1]].append(path)
            if all(len(v) == 5 for v in found.values()):
                break
    assert all(len(v) == 5 for v in found.values())
    return found


def test_a_photo_added_to_a_symlinked_class_folder_invalidates_the_cache(tmp_path: Path, photos: dict[str, list[Path]]) -> None:
    """Class folders that are symbolic links (to photos kept elsewhere) are fingerprinted by what they hold."""
    elsewhere, root = tmp_path / "photos", tmp_path / "data" / "train"
    root.mkdir(parents=True)
    for cls, files in photos.items():
        (elsewhere / cls).mkdir(parents=True)
        for f in files[:4]:
            (elsewhere / cls / f.name).write_bytes(f.read_bytes())
        (root / cls).symlink_to(elsewhere / cls, target_is_directory=True)
    cache = tmp_path / "cache"
    first = load_dataset(tmp_path / "data", image_size=(64, 64), cache_dir=cache)
    assert first.counts() == {"cat": 4, "dog": 4}
    new = photos["cat"][4]
    (elsewhere / "cat" / new.name).write_bytes(new.read_bytes())  # through the link's target, as a user adding a photo does
    second = load_dataset(tmp_path / "data", image_size=(64, 64), cache_dir=cache)
    assert second.counts() == {"cat": 5, "dog": 4}  # not the stale cached 4
    assert len(list(cache.glob("*.npz"))) == 2
    # a changed photo behind the link (same name, new content) is seen too
    (elsewhere / "dog" / photos["dog"][0].name).write_bytes(photos["dog"][4].read_bytes())
    third = load_dataset(tmp_path / "data", image_size=(64, 64), cache_dir=cache)
    assert not np.array_equal(third.x[5], second.x[5])


def test_a_link_loop_in_the_tree_is_fingerprinted_once(tmp_path: Path, photos: dict[str, list[Path]]) -> None:
    for cls, files in photos.items():
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        for f in files[:2]:
            (tmp_path / "data" / "train" / cls / f.name).write_bytes(f.read_bytes())
    (tmp_path / "data" / "train" / "cat" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)
    ds = load_dataset(tmp_path / "data", image_size=(64, 64), cache_dir=tmp_path / "cache")
    assert ds.counts() == {"cat": 2, "dog": 2}


def test_the_cache_is_bounded_least_recently_used_first(tmp_path: Path, cifar10: Dataset, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    trees = [_write_tree(tmp_path / f"tree{i}", cifar10.subset(stratified_sample(cifar10.y, 6, seed=i))) for i in range(3)]
    load_dataset(trees[0], cache_dir=cache)
    load_dataset(trees[1], cache_dir=cache)
    entries = sorted(cache.glob("*.npz"))
    assert len(entries) == 2
    one = entries[0].stat().st_size
    for age, entry in zip((3000, 2000), sorted(entries, key=lambda p: p.name), strict=True):  # tree0 used long ago, tree1 less so
        os.utime(entry, (time.time() - age, time.time() - age))
    caplog.set_level(logging.INFO)
    load_dataset(trees[0], cache_dir=cache)  # a hit: tree0 becomes the most recently used
    assert "from cache" in caplog.text
    monkeypatch.setenv("EDGE_RECOGNITION_CACHE_LIMIT", str(int(2.5 * one)))
    load_dataset(trees[2], cache_dir=cache)  # a third entry: over the bound, the least recently used (tree1) goes
    left = {p.name.split("-")[0] for p in cache.glob("*.npz")}
    assert left == {"tree0", "tree2"}, left
    assert "least recently used" in caplog.text
    monkeypatch.setenv("EDGE_RECOGNITION_CACHE_LIMIT", "lots")
    with pytest.raises(DataError, match=r"EDGE_RECOGNITION_CACHE_LIMIT='lots'.*500M or 4G"):  # before any image is decoded
        load_dataset(trees[1], cache_dir=cache)


def test_parse_bytes() -> None:
    assert parse_bytes("4G") == 4 * 1024**3 and parse_bytes("500M") == 500 * 1024**2 and parse_bytes("1.5GiB") == int(1.5 * 1024**3)
    assert parse_bytes("1000") == 1000 and parse_bytes("0") == 0
    for bad in ("", "-1G", "4Q", "G"):
        with pytest.raises(DataError):
            parse_bytes(bad)


def test_a_folder_without_images_is_one_error_naming_the_layout_and_extensions(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        (tmp_path / "data" / "train" / cls / "photo.heic").write_bytes(b"not a supported format")
    for call in (lambda: peek_image_size(tmp_path / "data"), lambda: load_dataset(tmp_path / "data", cache_dir=tmp_path / "c")):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith(f"no images in {tmp_path / 'data'} for split 'train'"), msg
        assert f"{tmp_path / 'data'}/train/<class>/<image>" in msg and ".jpg, .jpeg, .png, .bmp, .webp" in msg
