"""The transfer recipe's features from photos read in bounded batches (``Rows``) are those of the photos in memory (issue 34,
memory): the same pixels in every view, the same cache keys (a cache written by one path is hit by the other), the
same features, the same head and accuracy, and the numpy memory of a streamed pass bounded by a chunk, not the set."""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converter.data.augment import augmented_view
from converter.data.datasets import Rows, load_dataset, stratified_sample

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SIZE = (64, 64)


@pytest.fixture(scope="module")
def rows(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """12 real cats-vs-dogs training photos a class at 64 px, rows of the memory-mapped dataset cache (not in order)."""
    full = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "train", SIZE)
    pick = stratified_sample(full.y, 12, seed=5)
    return full.rows(pick[np.random.default_rng(1).permutation(len(pick))])


@pytest.fixture(scope="module")
def backbone() -> Any:
    from converter.models.backbones import build_backbone

    model = build_backbone("efficientnet-lite0", (*SIZE, 3)).model
    model.trainable = False
    return model


def _whole_views(x: np.ndarray, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """The views as whole arrays, built the way the recipe built them before it streamed (one random stream in order)."""
    out = [("plain", x), ("mirror", x[:, :, ::-1])][:n]
    rng = np.random.default_rng(seed)
    for k in range(2, n):
        out.append((f"crop{k - 1}-s{seed}", np.stack([augmented_view(img, rng) for img in x])))
    return out


def test_streamed_views_have_the_pixels_and_digests_of_the_whole_arrays(rows: Rows) -> None:
    from converter.training.transfer import _array_digest, _view_digest, _views

    whole = _whole_views(rows.take(np.arange(len(rows))), 4, seed=3)
    views = _views(rows, True, 4, seed=3)
    assert [v.name for v in views] == [name for name, _ in whole] == ["plain", "mirror", "crop1-s3", "crop2-s3"]
    for v, (_, x) in zip(views, whole, strict=True):
        assert v.shape == x.shape
        got = list(v.batches(5))  # batch edges inside the set: 24 photos in 5 batches
        assert [len(b) for b in got] == [5, 5, 5, 5, 4]
        assert np.array_equal(np.concatenate(got), x), v.name
        assert np.array_equal(np.concatenate(list(v.batches(7))), x), f"{v.name}: a second pass differs"
        assert _view_digest(v) == _array_digest(x), v.name
    assert not np.array_equal(whole[2][1], whole[3][1])  # two different crop draws
    # a later draw asked for before the earlier one was read through still starts where it would have
    late = _views(rows, True, 4, seed=3)[3]
    assert np.array_equal(np.concatenate(list(late.batches(9))), whole[3][1])


def test_features_from_rows_equal_the_in_memory_features_and_share_their_cache(rows: Rows, backbone: Any, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.training.transfer import _views, compute_features

    x = rows.take(np.arange(len(rows)))
    for v, (name, xv) in zip(_views(rows, True, 3, seed=0), _whole_views(x, 3, seed=0), strict=True):
        in_memory = compute_features(backbone, xv, tag=f"t-{name}", cache_dir=tmp_path / "a")
        streamed = compute_features(backbone, v, tag=f"t-{name}", cache_dir=tmp_path / "b")
        assert in_memory.shape == (len(rows), 1280) and np.abs(in_memory).max() > 0
        np.testing.assert_array_equal(streamed, in_memory, err_msg=name)
    assert sorted(p.name for p in (tmp_path / "a" / "features").iterdir()) == sorted(p.name for p in (tmp_path / "b" / "features").iterdir())

    def no_predict(*args: object, **kwargs: object) -> None:
        raise AssertionError("the backbone ran: the streamed view missed the cache the in-memory path wrote")

    monkeypatch.setattr(backbone, "predict", no_predict)
    for v in _views(rows, True, 3, seed=0):
        cached = compute_features(backbone, v, tag=f"t-{v.name}", cache_dir=tmp_path / "a")
        assert cached.shape == (len(rows), 1280)


def test_a_streamed_pass_holds_a_chunk_of_photos_not_the_set(shared_datasets: Path, backbone: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's allocations while the mirror-view features of 200 rows are computed in chunks of 8 photos (the digest
    read 8 at a time too): the features twice (the chunks' and their concatenation, 2 MB), a chunk's float32 copy and
    Keras' change, under half the 200 photos as float32 (the photos' uint8 and a contiguous mirror copy alone are that)."""
    from converter.training import transfer
    from converter.training.transfer import _views, compute_features

    monkeypatch.setattr(transfer, "BATCH", 8)
    full = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "train", SIZE)
    many = full.rows(stratified_sample(full.y, 100, seed=7))
    whole_f32 = len(many) * int(np.prod(many.image_shape)) * 4
    plain, mirror = _views(many, True, 2)
    compute_features(backbone, plain, tag="warm", cache_dir=tmp_path, batch=1)  # Keras traces its predict step
    tracemalloc.start()
    try:
        feats = compute_features(backbone, mirror, tag="mem", cache_dir=tmp_path, batch=1)  # chunks of 8 photos
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert feats.shape == (200, 1280)
    assert peak < whole_f32 / 2, f"peak {peak / 1e6:.2f} MB of numpy memory for {whole_f32 / 1e6:.2f} MB of float32 photos"


def _keep(seen: dict[str, tuple[np.ndarray, np.ndarray]], name: str, train_features: np.ndarray, val_features: np.ndarray) -> None:
    seen[name] = (train_features, val_features)


def test_train_transfer_on_rows_reports_what_it_reports_on_the_photos_in_memory(rows: Rows, shared_datasets: Path, tmp_path: Path) -> None:
    """The same 24 training photos and 10 validation photos, once as Rows and once loaded: the same features (given to the
    dataset doctor's hook), head and accuracies; separate caches, so both paths compute their features."""
    from converter.training.transfer import Images, TransferConfig, train_transfer

    full = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "test", SIZE)
    val = full.rows(stratified_sample(full.y, 5, seed=2))
    cfg = TransferConfig(epochs=3, head="dense")
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    runs = {}
    sources: dict[str, tuple[Images, Images]] = {"rows": (rows, val), "memory": (rows.load(), val.load())}
    for name, (tr, va) in sources.items():
        model, report = train_transfer(cfg, tr, va, cache_dir=tmp_path / name, verbose=0,
                                       features_hook=functools.partial(_keep, seen, name))
        runs[name] = (model.get_layer("classifier").get_weights(), report)
    np.testing.assert_array_equal(seen["rows"][0], seen["memory"][0])
    np.testing.assert_array_equal(seen["rows"][1], seen["memory"][1])
    assert seen["rows"][0].shape == (24, 1280) and seen["rows"][1].shape == (10, 1280)
    for a, b in zip(runs["rows"][0], runs["memory"][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    keys = ("head", "feature_views", "head_val_accuracy", "history")
    assert {k: runs["rows"][1][k] for k in keys} == {k: runs["memory"][1][k] for k in keys}
