"""The few-shot logistic head (converter.training.heads) on real images: Fashion-MNIST pixels as features, 20 a class."""

from __future__ import annotations

import numpy as np
import pytest

from converter.data.datasets import Dataset, stratified_sample
from converter.training.heads import LOGREG_CS, fit_logreg


@pytest.fixture(scope="module")
def few(fashion_mnist_train: Dataset, fashion_mnist_test: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """20 training images a class of 4 Fashion-MNIST classes (T-shirt, trouser, pullover, dress) and 100 held-out ones a class."""
    keep_tr, keep_te = fashion_mnist_train.y < 4, fashion_mnist_test.y < 4
    tr = fashion_mnist_train.subset(np.flatnonzero(keep_tr)[stratified_sample(fashion_mnist_train.y[keep_tr], 20, seed=2)])
    te = fashion_mnist_test.subset(np.flatnonzero(keep_te)[stratified_sample(fashion_mnist_test.y[keep_te], 100, seed=2)])
    return tr.x.reshape(len(tr), -1).astype(np.float32), tr.y, te.x.reshape(len(te), -1).astype(np.float32), te.y


@pytest.mark.parametrize("select", ["accuracy", "nll"])
def test_c_chosen_by_grouped_kfold_either_way_gives_a_head_that_generalises(few: tuple[np.ndarray, ...], select: str) -> None:
    x, y, xt, yt = few
    fit = fit_logreg(x, y, np.arange(len(y)), 4, select=select)
    assert fit.C in LOGREG_CS and fit.cv_accuracy is not None and 0.5 < fit.cv_accuracy <= 1.0, fit
    assert fit.kernel.shape == (x.shape[1], 4) and fit.bias.shape == (4,)
    assert np.mean(fit.predict(xt) == yt) >= 0.8  # chance is 0.25; measured 0.91 (both selections) on these 400 held-out images


def test_an_unknown_selection_is_refused(few: tuple[np.ndarray, ...]) -> None:
    x, y, _, _ = few
    with pytest.raises(ValueError, match="select must be one of accuracy, nll"):
        fit_logreg(x, y, np.arange(len(y)), 4, select="loss")
