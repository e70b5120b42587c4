"""Classical baselines: a hand-crafted feature (:mod:`converter.classical.features`) and a scikit-learn classifier.

Each baseline is a ``Pipeline`` of :class:`ImageFeatures` → ``StandardScaler`` → classifier that
takes raw uint8 images, so the pickled pipeline is the whole model. Classifiers are chosen by
name from :data:`CLASSIFIERS`. :func:`run_baselines` fits every (feature, classifier) pair,
extracting each feature once, and scores it on a held-out set.
"""

from __future__ import annotations

import logging
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from converter.classical.features import FeatureExtractor, extract_features, get_feature, log_progress
from converter.data.datasets import Dataset, stratified_sample
from converter.errors import ConverterError
from converter.evaluation.report import MethodResult, per_class_accuracy

log = logging.getLogger(__name__)

RBF_MAX_TRAIN = 5000


@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier by name: how to build it, and the most training images it is given."""

    label: str
    build: Callable[[int], Any]  # seed -> an unfitted scikit-learn classifier
    max_train: int | None = None  # larger training sets are subsampled (stratified); None: all


CLASSIFIERS: dict[str, ClassifierSpec] = {
    "linear-svm": ClassifierSpec("linear SVM", lambda seed: LinearSVC(C=0.001, max_iter=5000, random_state=seed)),
    "rbf-svm": ClassifierSpec("RBF SVM", lambda seed: SVC(C=10.0, kernel="rbf", gamma="scale", random_state=seed), max_train=RBF_MAX_TRAIN),
    "logreg": ClassifierSpec("logistic regression", lambda seed: LogisticRegression(C=0.1, max_iter=1000, random_state=seed)),
    "forest": ClassifierSpec(
        "random forest", lambda seed: RandomForestClassifier(n_estimators=100, min_samples_leaf=3, n_jobs=-1, random_state=seed)
    ),
}
DEFAULT_CLASSIFIERS = tuple(CLASSIFIERS)
FEATURE_LABELS = {"hog": "HOG", "lbp": "LBP", "lbp-global": "global LBP", "color": "colour histogram", "raw": "raw pixels"}


def feature_label(name: str) -> str:
    return " + ".join(FEATURE_LABELS.get(p, p) for p in name.split("+"))


def parse_classifiers(text: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown or not names:
        raise ConverterError(f"unknown classifier(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CLASSIFIERS)}")
    return names


class ImageFeatures(TransformerMixin, BaseEstimator):
    """A stateless scikit-learn transformer: uint8 images ``(N, H, W, C)`` -> feature matrix."""

    def __init__(self, extractor: FeatureExtractor, n_jobs: int = 1) -> None:
        self.extractor = extractor
        self.n_jobs = n_jobs

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> ImageFeatures:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return extract_features(self.extractor, np.asarray(x), n_jobs=self.n_jobs)

    def __sklearn_is_fitted__(self) -> bool:
        return True


@dataclass
class FittedClassifier:
    model: Pipeline  # scaler -> classifier, on features
    seconds: float
    train_images: int
    notes: list[str] = field(default_factory=list)


def fit_classifier(name: str, features: np.ndarray, y: np.ndarray, seed: int = 0) -> FittedClassifier:
    """Fit ``StandardScaler`` + classifier ``name`` on a feature matrix (subsampled if the classifier caps it)."""
    spec = CLASSIFIERS[name]
    notes = []
    if spec.max_train is not None and len(y) > spec.max_train:
        n_cls = len(np.unique(y))
        idx = stratified_sample(y, spec.max_train // n_cls, seed)
        notes.append(
            f"trained on a stratified subsample of {len(idx):,} of the {len(y):,} training images "
            f"(kernel SVM training grows quadratically with the data; limit {spec.max_train:,})"
        )
        features, y = features[idx], y[idx]
    model = Pipeline([("scale", StandardScaler()), ("clf", spec.build(seed))])
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, y)
    seconds = time.perf_counter() - t0
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append("the solver stopped at its iteration limit before converging")
    return FittedClassifier(model, seconds, len(y), notes)


def image_pipeline(extractor: FeatureExtractor, fitted: Pipeline) -> Pipeline:
    """The complete model on raw images: features, then the fitted scaler and classifier."""
    return Pipeline([("features", ImageFeatures(extractor)), *fitted.steps])


def pickled_size(obj: Any) -> int:
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def run_baselines(
    features: Sequence[str],
    classifiers: Sequence[str],
    train: Dataset,
    held_out: Dataset,
    *,
    seed: int = 0,
    n_jobs: int = -1,
) -> Iterator[tuple[MethodResult, np.ndarray]]:
    """Fit and score every (feature, classifier) pair; yields each result with its held-out predictions."""
    total = len(features) * len(classifiers)
    step = 0
    for fname in features:
        extractor = get_feature(fname)
        label = feature_label(fname)
        log.info("%s: extracting features of %d training images", label, len(train))
        t0 = time.perf_counter()
        f_train = extract_features(extractor, train.x, n_jobs=n_jobs, progress=log_progress(f"{label} (train)", 0.25))
        train_feature_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        f_eval = extract_features(extractor, held_out.x, n_jobs=n_jobs, progress=log_progress(f"{label} (held-out)", 0.5))
        eval_feature_s = time.perf_counter() - t0
        log.info("%s: %d features per image, %.1f s (train) + %.1f s (held-out)", label, f_train.shape[1], train_feature_s, eval_feature_s)
        for cname in classifiers:
            step += 1
            spec = CLASSIFIERS[cname]
            name = f"{label} + {spec.label}"
            log.info("[%d/%d] %s: fitting", step, total, name)
            fitted = fit_classifier(cname, f_train, train.y, seed)
            t0 = time.perf_counter()
            pred = fitted.model.predict(f_eval)
            predict_s = time.perf_counter() - t0
            acc = float(np.mean(pred == held_out.y))
            # the feature time is prorated to the images the classifier used
            feature_s = train_feature_s * fitted.train_images / len(train)
            size = pickled_size(image_pipeline(extractor, fitted.model))
            result = MethodResult(
                key=f"{fname}/{cname}",
                name=name,
                kind="classical",
                accuracy=acc,
                per_class=per_class_accuracy(held_out.y, pred, held_out.classes),
                train_seconds=round(feature_s + fitted.seconds, 3),
                inference_ms=1000.0 * (eval_feature_s + predict_s) / len(held_out),
                size_bytes=size,
                size_of="pickled pipeline",
                train_images=fitted.train_images,
                notes=fitted.notes,
                details={
                    "feature": fname,
                    "feature_description": extractor.description,
                    "feature_dim": int(f_train.shape[1]),
                    "classifier": cname,
                    "classifier_params": {k: _jsonable(v) for k, v in fitted.model.named_steps["clf"].get_params().items()},
                    "feature_seconds": round(feature_s, 3),
                    "fit_seconds": round(fitted.seconds, 3),
                    "feature_jobs": n_jobs,
                },
            )
            log.info("[%d/%d] %s: accuracy %.2f %%, fit %.1f s", step, total, name, 100 * acc, fitted.seconds)
            yield result, pred


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else repr(v)
