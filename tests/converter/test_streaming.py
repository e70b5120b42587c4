"""Datasets are decoded one photo at a time into a memory-mapped file and read back in bounded batches (issue 34, memory).

Real cats-vs-dogs photos: a loader that decoded the whole set into memory (a list of images, then ``np.stack``) peaks at
twice the decoded set; the streaming one at one photo plus a copy buffer.
"""

from __future__ import annotations

import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converter.data.datasets import BATCH, Rows, decode_image, fit_to_size, load_dataset, load_folder, stratified_sample, train_val, train_val_rows
from converter.export.convert import decode_sample
from converter.export.quantize import write_npy

PER_CLASS = 150  # 300 photos, 45 MB decoded at 224 px


@pytest.fixture(scope="module")
def photo_tree(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``PER_CLASS`` real photos of each class of the cats-vs-dogs training split, as ``root/train/<class>/*.jpg``."""
    root = tmp_path_factory.mktemp("photos")
    taken: dict[str, int] = {}
    with tarfile.open(shared_datasets / "cats-vs-dogs.tar.gz") as tf:
        for member in tf:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "train" or taken.get(parts[-2], 0) >= PER_CLASS:
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            (root / "train" / parts[-2]).mkdir(parents=True, exist_ok=True)
            (root / "train" / parts[-2] / parts[-1]).write_bytes(fh.read())
            taken[parts[-2]] = taken.get(parts[-2], 0) + 1
            if len(taken) == 2 and min(taken.values()) >= PER_CLASS:
                break
    assert taken == {"cat": PER_CLASS, "dog": PER_CLASS}
    return root


def _traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("use_cache", [True, False])
def test_loading_a_photo_folder_never_holds_the_decoded_set(photo_tree: Path, tmp_path: Path, use_cache: bool) -> None:
    ds, peak = _traced_peak(lambda: load_folder(photo_tree, image_size=(224, 224), cache_dir=tmp_path / "cache", use_cache=use_cache))
    decoded = ds.x.size  # bytes of uint8
    assert ds.x.shape == (2 * PER_CLASS, 224, 224, 3) and decoded > 40e6
    assert isinstance(ds.x, np.memmap)  # read from the file when used
    assert peak < 12e6, f"loading allocated {peak / 1e6:.1f} MB at its peak for {decoded / 1e6:.1f} MB of decoded photos"
    # the same photos, in the same order, as decoding them one by one
    for cls in ds.classes:
        first = decode_image(sorted((photo_tree / "train" / cls).iterdir())[0].read_bytes())
        assert first is not None
        assert np.array_equal(ds.x[ds.y == ds.classes.index(cls)][0], fit_to_size(first, (224, 224)))
    if use_cache:  # the cache hit maps the same file: nothing decoded, nothing large allocated
        again, peak = _traced_peak(lambda: load_folder(photo_tree, image_size=(224, 224), cache_dir=tmp_path / "cache"))
        assert np.array_equal(again.x, ds.x) and np.array_equal(again.y, ds.y) and peak < 2e6
    else:
        assert not list(tmp_path.glob("cache/*"))


def test_rows_are_the_carve_read_in_bounded_batches(photo_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RECOGNITION_CACHE", str(tmp_path / "cache"))
    train, val = train_val(photo_tree, (160, 160), 0.1, seed=3)
    (rtrain, rval), peak = _traced_peak(lambda: train_val_rows(photo_tree, (160, 160), 0.1, seed=3))
    assert isinstance(rtrain, Rows) and peak < 2e6  # a cache hit: the splits are indices, no image copied
    assert (len(rtrain), len(rval)) == (len(train), len(val)) and rtrain.classes == train.classes
    assert np.array_equal(rtrain.y, train.y) and np.array_equal(rval.y, val.y)
    sizes, parts = [], []
    for batch in rtrain.batches(64):
        sizes.append(len(batch))
        parts.append(batch)
    assert max(sizes) == 64 and sum(sizes) == len(train) and len(sizes) == -(-len(train) // 64)
    assert np.array_equal(np.concatenate(parts), train.x)  # same photos, same order
    assert np.array_equal(np.concatenate(list(rval.batches())), val.x) and len(val) <= BATCH
    pick = stratified_sample(rtrain.y, 5, seed=0)
    assert np.array_equal(rtrain.subset(pick).take(np.arange(len(pick))), train.x[pick])
    assert np.array_equal(rtrain.load().x, train.x)
    # the calibration file is written batch by batch and holds exactly those images
    calib = rtrain.subset(pick)
    write_npy(tmp_path / "calib.npy", (len(calib), *calib.image_shape), calib.batches(3))
    assert np.array_equal(np.load(tmp_path / "calib.npy", mmap_mode="r"), train.x[pick])
    # decode_check's pick of at most N images, read alone, is the pick it makes from all of them
    images, labels = decode_sample(rtrain, seed=0, limit=20)
    expected = stratified_sample(train.y, 10, seed=0)
    assert np.array_equal(images, train.x[expected]) and np.array_equal(labels, train.y[expected])


def test_builtin_sets_stream_too(tmp_path: Path) -> None:
    full = load_dataset("fashion-mnist", "test")
    rows = full.rows(np.arange(100, 700))
    batches = list(rows.batches())
    assert [len(b) for b in batches] == [BATCH, BATCH, 600 - 2 * BATCH]
    assert np.array_equal(np.concatenate(batches), full.x[100:700])


def _rss_file_kb() -> int:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["RssFile"].split()[0])


def test_reading_rows_maps_nothing_into_memory(photo_tree: Path, tmp_path: Path) -> None:
    """A fifth of the photos, spread over the file: read with plain reads, not through the mapping (which would leave
    whole large folios of the file resident, close to all of it)."""
    ds = load_folder(photo_tree, image_size=(224, 224), cache_dir=tmp_path / "cache")
    pick = np.arange(0, len(ds), 5)
    before = _rss_file_kb()
    images = ds.rows().take(pick)
    grown = (_rss_file_kb() - before) * 1024
    assert images.shape == (len(pick), 224, 224, 3) and not isinstance(images, np.memmap)
    assert np.array_equal(images, np.asarray(ds.x[pick]))  # the same pixels as through the mapping
    assert grown < 4e6, f"reading {images.nbytes / 1e6:.1f} MB of rows left {grown / 1e6:.1f} MB of the file resident"
