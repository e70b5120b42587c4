"""Score smoothing on the shipped model's real scores for real CIFAR-10 validation images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.errors import ConfigError, ExitCode
from edge_app.model import Classifier, resolve_model
from edge_app.smoothing import ScoreSmoother
from tests.edge_app.framekit import upscale


@pytest.fixture(scope="module")
def confident(cifar10_val: Dataset, default_model: Path) -> tuple[Classifier, dict[int, np.ndarray]]:
    """Real score vectors of two validation images the model labels differently: a steady one (the
    clearest top-1 margin over the other's label) and a second one whose top-1 is that other label."""
    clf = Classifier(resolve_model(default_model))
    picks = np.linspace(0, len(cifar10_val) - 1, 80).astype(int)
    all_scores = [clf.scores(upscale(cifar10_val.x[i])) for i in picks]
    best: tuple[float, int, int] | None = None
    for a, sa in enumerate(all_scores):
        for b, sb in enumerate(all_scores):
            la, lb = int(np.argmax(sa)), int(np.argmax(sb))
            if la != lb and (best is None or sa[la] - sa[lb] > best[0]):
                best = (float(sa[la] - sa[lb]), a, b)
    assert best is not None, "the model gave every image the same label"
    _, a, b = best
    return clf, {int(np.argmax(all_scores[a])): all_scores[a], int(np.argmax(all_scores[b])): all_scores[b]}


def test_alpha_one_passes_scores_through(confident) -> None:
    _, found = confident
    smoother = ScoreSmoother(1.0)
    for scores in [*found.values(), *found.values()]:
        np.testing.assert_array_equal(smoother.update(scores), scores)


def test_matches_the_moving_average_formula(confident) -> None:
    _, found = confident
    a, b = found.values()
    smoother = ScoreSmoother(0.25)
    np.testing.assert_allclose(smoother.update(a), a)
    np.testing.assert_allclose(smoother.update(b), 0.25 * b + 0.75 * a, rtol=1e-6)
    np.testing.assert_allclose(smoother.update(b), 0.25 * b + 0.75 * (0.25 * b + 0.75 * a), rtol=1e-6)
    assert smoother.value is not None and smoother.value.dtype == np.float32


def test_single_glitch_frame_does_not_flip_the_label(confident) -> None:
    _, found = confident
    (steady_label, steady), (glitch_label, glitch) = found.items()
    # The glitch can only flip the smoothed label if alpha * its pull beats (1 - alpha) * the steady margin.
    alpha = 0.5 * (steady[steady_label] - steady[glitch_label]) / (
        (steady[steady_label] - steady[glitch_label]) + (glitch[glitch_label] - glitch[steady_label])
    )
    raw, smooth = ScoreSmoother(1.0), ScoreSmoother(float(alpha))
    sequence = [steady] * 5 + [glitch] + [steady] * 3
    raw_labels = [int(np.argmax(raw.update(s))) for s in sequence]
    smooth_labels = [int(np.argmax(smooth.update(s))) for s in sequence]
    assert raw_labels[5] == glitch_label  # unsmoothed, the glitch shows
    assert smooth_labels == [steady_label] * len(sequence)  # smoothed, it never does


def test_a_real_change_comes_through_within_a_few_frames(confident) -> None:
    _, found = confident
    (_, first), (second_label, second) = found.items()
    smoother = ScoreSmoother(0.5)
    for _ in range(5):
        smoother.update(first)
    labels = [int(np.argmax(smoother.update(second))) for _ in range(4)]
    assert labels[-1] == second_label
    assert labels.index(second_label) <= 2


def test_reset_and_shape_change_start_afresh(confident) -> None:
    _, found = confident
    a, b = found.values()
    smoother = ScoreSmoother(0.1)
    smoother.update(a)
    smoother.reset()
    assert smoother.value is None
    np.testing.assert_allclose(smoother.update(b), b)
    other_model = np.array([0.2, 0.8], np.float32)
    np.testing.assert_allclose(smoother.update(other_model), other_model)


def test_update_neither_aliases_nor_mutates(confident) -> None:
    _, found = confident
    a, b = found.values()
    before = a.copy()
    smoother = ScoreSmoother(0.5)
    out = smoother.update(a)
    out[:] = 0
    smoother.update(b)
    np.testing.assert_array_equal(a, before)
    assert smoother.value is not None and float(smoother.value.sum()) > 0.5


@pytest.mark.parametrize("alpha", [0, -0.5, 1.01, math.nan, "fast", None])
def test_bad_alpha_is_a_one_line_config_error(alpha) -> None:
    with pytest.raises(ConfigError) as info:
        ScoreSmoother(alpha)
    message = str(info.value)
    assert "\n" not in message and "(0, 1]" in message and "1.0" in message
    assert info.value.exit_code == ExitCode.CONFIG
