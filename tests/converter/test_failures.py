"""Failure analysis of a real model's predictions on real held-out images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset, stratified_sample
from converter.evaluation.evaluate import tflite_predict
from converter.evaluation.failures import CONFIDENT, FailureAnalysis, analyse, plot_confusion, plot_mistakes


@pytest.fixture(scope="module")
def shipped_model_analysis(default_model: Path, cifar10_val: Dataset) -> tuple[FailureAnalysis, Dataset, np.ndarray]:
    # 60 a class: the shipped model trained on these images too (all 50,000), so it errs on few of them (8 here),
    # enough for two rows of the mistakes grid
    held = cifar10_val.subset(stratified_sample(cifar10_val.y, 60))
    probs = tflite_predict(default_model / "model.tflite", held.x)
    fa = analyse(held.y, probs, held.classes, image_shape=held.image_shape, method_key="shipped/int8", method_name="the shipped model")
    return fa, held, probs


def test_confusion_matrix_and_mistakes_match_the_predictions(shipped_model_analysis: tuple[FailureAnalysis, Dataset, np.ndarray]) -> None:
    fa, held, probs = shipped_model_analysis
    pred = probs.argmax(1)
    assert fa.confusion.shape == (10, 10)
    np.testing.assert_array_equal(fa.confusion.sum(1), np.bincount(held.y, minlength=10))
    assert fa.accuracy == pytest.approx(float(np.mean(pred == held.y)))
    assert len(fa.mistakes) == int(np.sum(pred != held.y))
    scores = [m.score for m in fa.mistakes]
    assert scores == sorted(scores, reverse=True)  # most confident first
    for m in fa.mistakes[:20]:
        assert held.y[m.index] == m.true != m.predicted == pred[m.index]
        assert m.score == pytest.approx(float(probs[m.index].max()))
    assert len(fa.correct_scores) == int(np.sum(pred == held.y))


def test_summaries_name_the_worst_classes_and_pairs(shipped_model_analysis: tuple[FailureAnalysis, Dataset, np.ndarray]) -> None:
    fa, _, _ = shipped_model_analysis
    acc = dict(fa.class_accuracy())
    worst = fa.worst_classes(3)
    assert [a for _, a in worst] == sorted(acc.values())[:3]
    pairs = fa.confused_pairs(5)
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    for p in pairs:
        i, j = fa.classes.index(p.true), fa.classes.index(p.predicted)
        assert i != j and fa.confusion[i, j] == p.count
    text = fa.paragraph()
    assert f"{fa.accuracy:.1%}" in text and worst[0][0] in text and f"{pairs[0].true} → {pairs[0].predicted}" in text
    rows = fa.confusion_text().splitlines()
    assert len(rows) == 11 and rows[1].split()[0] == "airplane"
    assert [int(v) for v in rows[1].split()[1:]] == fa.confusion[0].tolist()
    doc = fa.to_json("c.png", "m.png")
    assert doc["confusion_matrix"] == fa.confusion.tolist() and len(doc["confident_mistakes"]) == min(24, len(fa.mistakes))


def test_images_are_written(shipped_model_analysis: tuple[FailureAnalysis, Dataset, np.ndarray], tmp_path: Path) -> None:
    fa, held, _ = shipped_model_analysis
    for path in (plot_confusion(fa, tmp_path / "confusion.png"), plot_mistakes(fa, held.x, tmp_path / "mistakes.png")):
        img = cv2.imread(str(path))
        assert img is not None and min(img.shape[:2]) > 300 and img.std() > 10


def test_grey_images_and_a_perfect_model(fashion_mnist_test: Dataset, tmp_path: Path) -> None:
    held = fashion_mnist_test.subset(stratified_sample(fashion_mnist_test.y, 3))
    fa = analyse(held.y, np.eye(10)[held.y], held.classes, image_shape=held.image_shape, method_name="an oracle")
    assert fa.accuracy == 1.0 and not fa.mistakes and not fa.confused_pairs()
    assert "100.0%" in fa.paragraph()
    assert cv2.imread(str(plot_mistakes(fa, held.x, tmp_path / "none.png"))) is not None


def test_paragraph_tells_mutual_confusion_from_bias() -> None:
    classes = ["cat", "dog", "ship"]
    # cat<->dog both ways (8 and 7 images); ship -> dog one way (6), confidently
    y = np.array([0] * 20 + [1] * 20 + [2] * 20)
    pred = np.array([0] * 12 + [1] * 8 + [1] * 13 + [0] * 7 + [2] * 14 + [1] * 6)
    probs = np.full((60, 3), 0.025)
    probs[np.arange(60), pred] = 0.95
    fa = analyse(y, probs, classes, image_shape=(32, 32, 3), method_name="M")
    text = fa.paragraph()
    assert "cat and dog are confused in both directions (8 and 7 images)" in text
    assert "ship is taken for dog much more often than the reverse" in text
    assert f"21 of the 21 mistakes (100%) are made with a score of at least {CONFIDENT}" in text
    assert "barely separates them" in text  # correct and wrong predictions are equally confident here


def test_probabilities_must_match_the_labels() -> None:
    with pytest.raises(ValueError, match="do not match"):
        analyse(np.zeros(3, int), np.zeros((4, 2)), ["a", "b"], image_shape=(8, 8, 1))
