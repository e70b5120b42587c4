"""Feature extractors on real images: shapes, invariants, and enough signal to classify."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from converter.classical.features import DEFAULT_FEATURES, FEATURES, CombinedFeatures, extract_features, get_feature, grid_histograms, parse_features, to_grey
from converter.data.datasets import Dataset, stratified_sample, stratified_split
from converter.errors import ConverterError


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """BLAS threads fighting a busy machine (a training run, other tests) make the solvers 10-30x slower."""
    with threadpool_limits(1):
        yield


def _split(ds: Dataset, train_per_class: int, eval_per_class: int) -> tuple[Dataset, Dataset]:
    ti, vi = stratified_split(ds.y, 0.5, seed=0)
    train, held = ds.subset(ti), ds.subset(vi)
    return train.subset(stratified_sample(train.y, train_per_class)), held.subset(stratified_sample(held.y, eval_per_class))


@pytest.fixture(scope="module")
def fashion(fashion_mnist_test: Dataset) -> tuple[Dataset, Dataset]:
    return _split(fashion_mnist_test, 60, 30)


@pytest.fixture(scope="module")
def cifar_small(cifar10: Dataset) -> tuple[Dataset, Dataset]:
    return _split(cifar10, 60, 30)


def _accuracy(name: str, train: Dataset, held: Dataset) -> float:
    ext = get_feature(name)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    clf.fit(ext.extract(train.x), train.y)
    return float(np.mean(clf.predict(ext.extract(held.x)) == held.y))


# Fashion-MNIST (grey, 10 classes, chance 10 %): every feature carries real signal.
@pytest.mark.parametrize(("name", "floor"), [("hog", 0.65), ("lbp", 0.5), ("color", 0.25), ("raw", 0.6), ("lbp-global", 0.3)])
def test_each_feature_separates_fashion_mnist(fashion: tuple[Dataset, Dataset], name: str, floor: float) -> None:
    train, held = fashion
    assert _accuracy(name, train, held) > floor


# CIFAR-10 (colour, chance 10 %) is much harder; 600 training images still beat chance clearly.
@pytest.mark.parametrize(("name", "floor"), [("hog", 0.22), ("lbp", 0.17), ("color", 0.17), ("raw", 0.18)])
def test_features_beat_chance_on_cifar10(cifar_small: tuple[Dataset, Dataset], name: str, floor: float) -> None:
    train, held = cifar_small
    assert _accuracy(name, train, held) > floor


@pytest.mark.parametrize("name", list(FEATURES))
def test_shapes_and_values(cifar_small: tuple[Dataset, Dataset], fashion: tuple[Dataset, Dataset], name: str) -> None:
    ext = get_feature(name)
    for ds in (cifar_small[1], fashion[1]):
        x = ds.x[:20]
        f = ext.extract(x)
        assert f.dtype == np.float32 and f.shape[0] == 20 and f.ndim == 2
        assert np.isfinite(f).all()
        np.testing.assert_array_equal(f, ext.extract(x))  # deterministic
        assert f.std(0).max() > 0  # not a constant


def test_histograms_are_normalised(cifar_small: tuple[Dataset, Dataset]) -> None:
    x = cifar_small[1].x[:10]
    lbp = get_feature("lbp").extract(x).reshape(10, 16, 10)  # 4x4 cells, 10 uniform codes
    np.testing.assert_allclose(lbp.sum(-1), 1.0, rtol=1e-5)
    color = get_feature("color").extract(x)
    assert color.shape == (10, 8 * 4 * 4)
    np.testing.assert_allclose(color.sum(-1), 1.0, rtol=1e-5)


def test_grid_histograms_counts_each_cell() -> None:
    codes = np.zeros((1, 4, 4), dtype=np.int64)
    codes[0, :2, :2] = 1  # top-left cell all ones, the rest zeros
    h = grid_histograms(codes, n_bins=2, grid=2).reshape(4, 2)
    np.testing.assert_array_equal(h, [[0, 1], [1, 0], [1, 0], [1, 0]])


def test_grey_matches_opencv(cifar_small: tuple[Dataset, Dataset]) -> None:
    x = cifar_small[1].x[:5]
    ours = to_grey(x).astype(int)
    theirs = np.stack([cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in x]).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_raw_pixels_shrink_large_images(cifar_small: tuple[Dataset, Dataset]) -> None:
    big = np.stack([cv2.resize(img, (96, 96)) for img in cifar_small[1].x[:4]])
    f = get_feature("raw").extract(big)
    assert f.shape == (4, 32 * 32 * 3)
    assert f.min() >= 0.0 and f.max() <= 1.0


def test_hog_dimension_does_not_depend_on_image_size(cifar_small: tuple[Dataset, Dataset]) -> None:
    x = cifar_small[1].x[:3]
    big = np.stack([cv2.resize(img, (96, 96)) for img in x])
    assert get_feature("hog").extract(x).shape == get_feature("hog").extract(big).shape


def test_combined_features_concatenate(cifar_small: tuple[Dataset, Dataset]) -> None:
    x = cifar_small[1].x[:6]
    combo = get_feature("hog+color")
    assert isinstance(combo, CombinedFeatures) and combo.name == "hog+color"
    f = combo.extract(x)
    np.testing.assert_array_equal(f, np.concatenate([get_feature("hog").extract(x), get_feature("color").extract(x)], 1))


def test_unknown_feature_names_the_choices() -> None:
    with pytest.raises(ConverterError, match=r"unknown feature 'sift'.*hog, lbp"):
        get_feature("sift")
    with pytest.raises(ConverterError):
        parse_features("hog,,sift")
    assert [f.name for f in parse_features(",".join(DEFAULT_FEATURES))] == list(DEFAULT_FEATURES)


def test_extract_in_parallel_chunks_equals_one_pass(cifar_small: tuple[Dataset, Dataset]) -> None:
    x = cifar_small[0].x[:250]
    ext = get_feature("lbp")
    seen: list[tuple[int, int]] = []
    f = extract_features(ext, x, n_jobs=2, chunk_size=100, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(f, ext.extract(x))
    assert seen == [(100, 250), (200, 250), (250, 250)]


def test_extract_nothing_is_an_error() -> None:
    with pytest.raises(ConverterError, match="no images"):
        extract_features(get_feature("raw"), np.zeros((0, 8, 8, 3), np.uint8))
