"""Classical baselines on real images: every classifier learns, pipelines are whole models, results are complete."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from converter.classical import baselines
from converter.classical.baselines import CLASSIFIERS, fit_classifier, image_pipeline, parse_classifiers, run_baselines
from converter.classical.features import get_feature
from converter.data.datasets import Dataset, stratified_sample, stratified_split
from converter.errors import ConverterError


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """BLAS threads fighting a busy machine (a training run, other tests) make the solvers 10-30x slower."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def fashion(fashion_mnist_test: Dataset) -> tuple[Dataset, Dataset]:
    ti, vi = stratified_split(fashion_mnist_test.y, 0.5, seed=0)
    train, held = fashion_mnist_test.subset(ti), fashion_mnist_test.subset(vi)
    return train.subset(stratified_sample(train.y, 60)), held.subset(stratified_sample(held.y, 30))


@pytest.fixture(scope="module")
def hog_features(fashion: tuple[Dataset, Dataset]) -> tuple[np.ndarray, np.ndarray]:
    ext = get_feature("hog")
    return ext.extract(fashion[0].x), ext.extract(fashion[1].x)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_classifier_learns_fashion_mnist(fashion: tuple[Dataset, Dataset], hog_features: tuple[np.ndarray, np.ndarray], name: str) -> None:
    train, held = fashion
    fitted = fit_classifier(name, hog_features[0], train.y)
    acc = float(np.mean(fitted.model.predict(hog_features[1]) == held.y))
    assert acc > 0.65, f"{name}: {acc:.3f} (chance 0.10)"
    assert fitted.train_images == len(train) and fitted.seconds > 0
    assert list(fitted.model.named_steps) == ["scale", "clf"]


def test_rbf_svm_trains_on_a_stratified_subsample(fashion: tuple[Dataset, Dataset], hog_features: tuple[np.ndarray, np.ndarray],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    capped = dict(CLASSIFIERS, **{"rbf-svm": dataclasses.replace(CLASSIFIERS["rbf-svm"], max_train=200)})
    monkeypatch.setattr(baselines, "CLASSIFIERS", capped)
    fitted = fit_classifier("rbf-svm", hog_features[0], fashion[0].y)
    assert fitted.train_images == 200
    assert np.bincount(fitted.model.named_steps["clf"].classes_.astype(int)).tolist() == [1] * 10
    assert any("subsample of 200 of the 600" in n for n in fitted.notes)
    assert fitted.model.named_steps["clf"].support_vectors_.shape[0] <= 200


def test_image_pipeline_is_the_whole_model(fashion: tuple[Dataset, Dataset], hog_features: tuple[np.ndarray, np.ndarray]) -> None:
    train, held = fashion
    fitted = fit_classifier("logreg", hog_features[0], train.y)
    pipe = image_pipeline(get_feature("hog"), fitted.model)
    expected = fitted.model.predict(hog_features[1])
    np.testing.assert_array_equal(pipe.predict(held.x), expected)  # from raw uint8 images
    restored = pickle.loads(pickle.dumps(pipe))  # noqa: S301 - our own object
    np.testing.assert_array_equal(restored.predict(held.x), expected)


def test_run_baselines_scores_every_pair_on_the_same_images(fashion: tuple[Dataset, Dataset]) -> None:
    train, held = fashion
    results = list(run_baselines(["lbp", "raw"], ["linear-svm", "forest"], train, held, n_jobs=1))
    assert [r.key for r, _ in results] == ["lbp/linear-svm", "lbp/forest", "raw/linear-svm", "raw/forest"]
    for r, pred in results:
        assert pred.shape == held.y.shape
        assert r.accuracy == pytest.approx(float(np.mean(pred == held.y)))
        assert r.accuracy > 0.4
        assert set(r.per_class) == set(held.classes)
        assert np.mean(list(r.per_class.values())) == pytest.approx(r.accuracy)  # balanced held-out set
        assert r.kind == "classical" and r.size_of == "pickled pipeline"
        assert r.size_bytes > 1000 and r.train_seconds > 0 and r.inference_ms > 0
        assert r.train_images == len(train)
        assert r.details["feature_dim"] == (160 if r.details["feature"] == "lbp" else 784)
    names = {r.name for r, _ in results}
    assert "raw pixels + random forest" in names and "LBP + linear SVM" in names


def test_unknown_classifier_names_the_choices() -> None:
    with pytest.raises(ConverterError, match=r"knn.*linear-svm, rbf-svm, logreg, forest"):
        parse_classifiers("logreg,knn")
    assert parse_classifiers(" logreg , forest ") == ["logreg", "forest"]
