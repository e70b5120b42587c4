"""The few-shot head: class-balanced logistic regression on a backbone's cached features, as one softmax Dense layer.

``train-model --head logreg`` (``--head auto`` below ``SMALL_SET`` photos a class, converter.training.transfer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from converter.evaluation.cross_validation import group_folds

LOGREG_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))
SELECT = ("accuracy", "nll")  # what the grouped k-fold chooses C by


@dataclass
class LinearFit:
    """A multinomial logistic regression on standardised features, as the weights of one softmax Dense layer."""

    kernel: np.ndarray  # (features, classes), the standardisation folded in
    bias: np.ndarray  # (classes,)
    C: float
    cv_accuracy: float | None  # the internal cross-validation score C was chosen by (None: C given)

    def predict(self, f: np.ndarray) -> np.ndarray:
        return np.argmax(f @ self.kernel + self.bias, 1)


def fit_logreg(f: np.ndarray, y: np.ndarray, groups: np.ndarray, n_cls: int, *, seed: int = 0, C: float | None = None,
               Cs: tuple[float, ...] = LOGREG_CS, score_views: np.ndarray | None = None, select: str = "accuracy") -> LinearFit:
    """Strongly regularised, class-balanced logistic regression on standardised features; C by grouped k-fold
    cross-validation (scored on ``score_views``, the plain views, when given) unless ``C`` is given.

    ``select``: ``accuracy`` (the held-out photos' accuracy, the likelihood breaking ties) or ``nll`` (the held-out
    likelihood alone: smoother than accuracy on a few dozen photos)."""
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}, not {select!r}")
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    mu, sd = f.mean(0), f.std(0)
    sd = sd + 0.1 * float(np.median(sd)) + 1e-6  # a floor: near-constant features would get huge int8-unfriendly weights
    z = (f - mu) / sd
    present = np.unique(y)

    def fit(zz: np.ndarray, yy: np.ndarray, c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=500, tol=1e-3).fit(zz, yy)

    cv_acc = None
    if C is None:
        smallest = min(len(np.unique(groups[y == c])) for c in present)
        k = min(5, smallest)
        if k < 2 or len(present) < 2:
            C = 0.01
        else:
            folds = group_folds(y, groups, k, seed)
            best = (-1.0, -np.inf)
            for c in Cs:
                right = total = 0
                nll = 0.0
                for a, held in folds:
                    b = held[score_views[held]] if score_views is not None else held
                    m = fit(z[a], y[a], c)
                    p = m.predict_proba(z[b])
                    col = np.searchsorted(m.classes_, y[b])
                    right += int(np.sum(m.classes_[p.argmax(1)] == y[b]))
                    nll += float(np.sum(np.log(p[np.arange(len(b)), col] + 1e-12)))
                    total += len(b)
                key = (right / total, nll / total) if select == "accuracy" else (nll / total, right / total)
                if key > best:
                    best, C = key, c
            cv_acc = best[0] if select == "accuracy" else best[1]
    assert C is not None  # given, or chosen above
    m = fit(z, y, float(C))
    coef = np.zeros((n_cls, f.shape[1]), np.float64)
    bias = np.zeros(n_cls, np.float64)
    if len(m.classes_) == 2 and m.coef_.shape[0] == 1:  # binary: logits (-z/2, z/2) give the same probabilities
        coef[m.classes_[0]], coef[m.classes_[1]] = -m.coef_[0] / 2, m.coef_[0] / 2
        bias[m.classes_[0]], bias[m.classes_[1]] = -m.intercept_[0] / 2, m.intercept_[0] / 2
    else:
        coef[m.classes_], bias[m.classes_] = m.coef_, m.intercept_
    missing = np.setdiff1d(np.arange(n_cls), m.classes_)
    bias[missing] = -1e3  # a class without photos is never predicted
    kernel = (coef / sd).T
    return LinearFit(kernel.astype(np.float32), (bias - coef @ (mu / sd)).astype(np.float32), float(C), cv_acc)


def linear_head(fit: LinearFit) -> keras.Model:
    inputs = keras.Input((fit.kernel.shape[0],), name="features")
    dense = layers.Dense(fit.kernel.shape[1], activation="softmax", name="classifier")
    head = keras.Model(inputs, dense(inputs), name="head")
    dense.set_weights([fit.kernel, fit.bias])
    return head
