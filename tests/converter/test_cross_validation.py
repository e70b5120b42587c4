"""Issue 34's honest numbers: the nested cross-validation of the few-photo head on real photo features, Wilson intervals,
and the training score a train report hands to the bundle's manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import stratified_sample, train_val
from converter.evaluation.cross_validation import group_folds, interval, score_text, training_score, wilson

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photo_features(shared_datasets: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 features of 20 real dogs-vs-cats photos a class at 96 px, plain and mirrored, as train-model
    lays them out: (features, labels, photo of each row, plain-view mask)."""
    from converter.models.backbones import build_backbone
    from converter.training.transfer import compute_features

    train, _ = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (96, 96))
    train = train.subset(stratified_sample(train.y, 20, seed=5))
    backbone = build_backbone("efficientnet-lite0", train.image_shape).model
    views = (("plain", train.x), ("mirror", np.ascontiguousarray(train.x[:, :, ::-1])))
    f = np.concatenate([compute_features(backbone, x, tag=f"test-cv-{name}") for name, x in views])
    n = len(train)
    return f, np.tile(train.y, 2), np.tile(np.arange(n), 2), np.repeat(np.arange(2) == 0, n)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_logistic_head_is_scored_by_nested_cross_validation(photo_features) -> None:
    """Each outer training fold re-chooses C on its own photos: the reported per-fold C is what fit_logreg chooses on that
    fold's training rows alone (over the same grid), 5 folds x 3 repeats of them."""
    from converter.training.heads import LOGREG_CS, fit_logreg
    from converter.training.transfer import TransferConfig, cross_validate

    f, y, groups, plain = photo_features
    cv = cross_validate("logreg", TransferConfig(), f, y, groups, plain=plain, n_cls=2, C=0.0316)  # C: the shipped head's, reported only
    assert cv["nested"] is True and cv["C_all_photos"] == 0.0316 and "nested" in cv["method"]
    assert cv["C_grid"] == [float(f"{c:.4g}") for c in LOGREG_CS[::2]] and len(cv["fold_C"]) == cv["folds"] * cv["repeats"] == 15
    assert set(cv["fold_C"]) <= set(cv["C_grid"])
    for r in (0, 2):  # the first outer fold of the first and the last repeat, refitted by hand
        a, _ = group_folds(y, groups, 5, r)[0]
        alone = fit_logreg(f[a], y[a], groups[a], 2, seed=r, Cs=LOGREG_CS[::2], score_views=plain[a])
        assert cv["fold_C"][5 * r] == float(f"{alone.C:.4g}"), (r, cv["fold_C"], alone.C)
    lo, hi = cv["ci95"]
    assert cv["photos"] == 40 and 0.6 <= cv["accuracy"] <= 1 and lo <= cv["accuracy"] <= hi
    assert [lo, hi] == pytest.approx(interval(cv["accuracy"], 40), abs=2e-4)  # Wilson's over the 40 photos


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson(7, 10)  # 7 of 10: the 10-photo carve of issue 34's "0.70"
    assert round(lo, 3) == 0.397 and round(hi, 3) == 0.892
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


def test_training_score_of_a_real_carve_report_and_of_a_model_trained_on_everything() -> None:
    carve = json.loads((REPO / "reports" / "cats-vs-dogs-model" / "train_report.json").read_text())  # the shipped dogs-vs-cats model
    score = training_score(carve)
    assert score is not None and score["scored_by"] == "validation carve" and score["images"] == carve["val_images"] == 200
    assert score["accuracy"] == round(carve["val_accuracy"], 4) and score["ci95"] == interval(carve["val_accuracy"], 200)
    assert score["ci95"][0] < score["accuracy"] < score["ci95"][1] and "95 % CI" in score_text(score)
    everything = json.loads((REPO / "reports" / "cifar10-edge-cnn" / "train_report.json").read_text())  # --val-fraction 0
    assert everything["val_images"] == 0
    none = training_score(everything)
    assert none is not None and none["accuracy"] is None and "--val-fraction 0" in score_text(none)
    assert training_score({}) is None and score_text(None).startswith("not recorded")
