"""Repeated stratified k-fold scoring over photos (every view of a photo on one side of each split), Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

SMALL_CLASS = 50  # images in the smallest class below which an accuracy is a small set (and train-model cross-validates: CV_BELOW)
CI_NAME = "Wilson score interval over the photos"
# the training score of a model trained on every image (train-model --val-fraction 0)
NOT_SCORED = {"scored_by": "not scored", "accuracy": None, "method": "trained on every image (--val-fraction 0): nothing held out"}


def group_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over the photos (``groups``): every view of a photo on the same side of each split."""
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415 - scikit-learn only where asked for

    photos = np.unique(groups)
    label = np.array([y[np.flatnonzero(groups == g)[0]] for g in photos])
    folds = []
    for a, b in StratifiedKFold(k, shuffle=True, random_state=seed).split(photos, label):
        folds.append((np.flatnonzero(np.isin(groups, photos[a])), np.flatnonzero(np.isin(groups, photos[b]))))
    return folds


def wilson(right: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``right / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cross_validate(fit_predict: Callable[[np.ndarray, np.ndarray, int], np.ndarray], y: np.ndarray, groups: np.ndarray, *,
                   plain: np.ndarray, n_cls: int, repeats: int, seed: int, what: str) -> dict[str, Any]:
    """Repeated stratified k-fold accuracy of a classifier on the feature vectors of the training photos.

    ``fit_predict(train_rows, held_rows, repeat)`` fits on ``train_rows`` and returns the predicted classes of
    ``held_rows``. Every view of a photo (``groups``) stays on one side of each split; held-out photos are scored on
    their plain view (``plain``). The 95 % interval is Wilson's for the mean accuracy over the photos (each photo is
    scored once a repeat, so the photos, not the repeats, are the sample). ``what`` names the classifier in the report.
    """
    photos = int(plain.sum())
    label = y[plain]
    k = int(min(5, np.bincount(label, minlength=n_cls)[np.bincount(label, minlength=n_cls) > 0].min()))
    accs = []
    for r in range(repeats):
        right = 0
        for a, held in group_folds(y, groups, k, seed + r):
            b = held[plain[held]]
            right += int(np.sum(fit_predict(a, b, r) == y[b]))
        accs.append(right / photos)
    mean = float(np.mean(accs))
    lo, hi = wilson(mean * photos, photos)
    return {
        "method": f"repeated stratified {k}-fold cross-validation ({repeats} repeat{'s' * (repeats > 1)}) of {what} on the training photos",
        "accuracy": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)], "ci": CI_NAME,
        "folds": k, "repeats": repeats, "photos": photos, "repeat_accuracy": [round(a, 4) for a in accs],
    }



def interval(accuracy: float, n: int) -> list[float]:
    """The 95 % Wilson interval of an accuracy measured on ``n`` images, rounded as the reports write it."""
    lo, hi = wilson(accuracy * n, n)
    return [round(lo, 4), round(hi, 4)]


def training_score(report: dict[str, Any]) -> dict[str, Any] | None:
    """How ``train-model`` scored the model its ``train_report.json`` describes: ``scored_by`` (``cross-validation`` or
    ``validation carve``), ``accuracy`` with its 95 % interval, the ``method`` and its size (``folds``/``repeats``/``photos``
    for cross-validation, ``images`` for the carve). None when the report has neither; ``accuracy`` None when the model
    was trained on every image (``--val-fraction 0``: nothing held out)."""
    cv = report.get("cross_validation")
    if isinstance(cv, dict) and cv.get("accuracy") is not None:
        keep = ("accuracy", "ci95", "ci", "method", "folds", "repeats", "photos", "nested")
        return {"scored_by": report.get("scored_by") or "cross-validation", **{k: cv[k] for k in keep if k in cv}}
    acc, n = report.get("val_accuracy"), report.get("val_images")
    if isinstance(acc, dict):  # retrain-model's report: float and int8 on its carve
        acc = acc.get("float")
    if not isinstance(n, int):
        return None
    if n == 0 or not isinstance(acc, (int, float)) or math.isnan(acc):
        return dict(NOT_SCORED)
    return {"scored_by": report.get("scored_by") or "validation carve", "accuracy": round(float(acc), 4), "ci95": interval(float(acc), n),
            "ci": CI_NAME, "method": f"the float model on the {n} images train-model held out (its validation carve)", "images": n}


def score_text(score: dict[str, Any] | None) -> str:
    """One line for a :func:`training_score`: ``cross-validation: 0.8500 (95 % CI 0.7000-0.9300), repeated ...``."""
    if not score:
        return "not recorded (no training_score in the bundle's manifest.json, no train_report.json beside a .keras model)"
    if score.get("accuracy") is None:
        return f"{score.get('scored_by', 'not scored')}: {score.get('method', '')}"
    ci = score.get("ci95")
    ci_text = f" (95 % CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    return f"{score['scored_by']}: {score['accuracy']:.4f}{ci_text}, {score.get('method', '')}"
