"""draw_overlay on real camera-sized frames (CIFAR-10 validation images) with the shipped model's real results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.model import Classification
from edge_app.outputs import FrameResult
from edge_app.outputs.draw import TOP_COLOR, ascii_text, draw_banner, draw_overlay, stats_text
from tests.edge_app.framekit import classify_frames


@pytest.fixture(scope="module")
def real(cifar10_val: Dataset, default_model: Path) -> dict[tuple[int, int], tuple[np.ndarray, FrameResult]]:
    """One real validation image classified at several frame sizes (w, h)."""
    sizes = [(640, 480), (1920, 1080), (160, 120), (32, 32)]
    return {size: classify_frames(cifar10_val, default_model, [777], size=size)[0] for size in sizes}


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) bounding box of the pixels that differ."""
    ys, xs = np.nonzero(np.any(before != after, axis=2))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def green_run(image: np.ndarray) -> int:
    """Length of the longest horizontal run of exact TOP_COLOR pixels (the top-1 confidence bar)."""
    mask = np.all(image == np.array(TOP_COLOR, np.uint8), axis=2)
    return int(mask.sum(axis=1).max())


def test_returns_a_new_image_and_leaves_the_frame_alone(real) -> None:
    frame, result = real[(640, 480)]
    before = frame.copy()
    out = draw_overlay(frame, result)
    assert out is not frame and not np.shares_memory(out, frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(frame, before)
    # The picture is annotated top left (labels) and bottom left (stats) and untouched elsewhere.
    h, w = frame.shape[:2]
    assert np.any(out[: h // 4, : w // 3] != frame[: h // 4, : w // 3])
    assert np.any(out[-h // 8 :, : w // 2] != frame[-h // 8 :, : w // 2])
    np.testing.assert_array_equal(out[h // 3 : 2 * h // 3, w // 2 :], frame[h // 3 : 2 * h // 3, w // 2 :])


def test_confidence_bars_are_proportional_to_the_scores(real) -> None:
    frame, result = real[(640, 480)]
    full = replace(result, top=[Classification(result.top[0].id, result.top[0].label, 1.0)])
    half = replace(result, top=[Classification(result.top[0].id, result.top[0].label, 0.5)])
    real_len, full_len, half_len = (green_run(draw_overlay(frame, r)) for r in (result, full, half))
    assert full_len > 100
    assert abs(half_len - full_len / 2) <= 2
    assert abs(real_len - full_len * result.top[0].score) <= 2


def test_one_row_per_class_best_first(real) -> None:
    frame, result = real[(640, 480)]
    assert len(result.top) == 3
    one = replace(result, top=result.top[:1])
    box3 = changed_box(frame, draw_overlay(frame, result, show_stats=False))
    box1 = changed_box(frame, draw_overlay(frame, one, show_stats=False))
    assert box3[3] - box3[1] > 2 * (box1[3] - box1[1])  # three rows are much taller than one


def test_stats_line_can_be_turned_off(real) -> None:
    frame, result = real[(640, 480)]
    h = frame.shape[0]
    with_stats = draw_overlay(frame, result)
    without = draw_overlay(frame, result, show_stats=False)
    np.testing.assert_array_equal(without[-h // 4 :], frame[-h // 4 :])
    assert np.any(with_stats[-h // 4 :] != frame[-h // 4 :])
    text = stats_text(result)
    assert text.startswith(f"{result.fps:.1f} FPS") and "inference" in text and "end-to-end" in text
    assert stats_text(replace(result, latency_ms={})) == f"{result.fps:.1f} FPS"


def test_overlay_scales_with_the_frame(real) -> None:
    small_frame, small = real[(640, 480)]
    big_frame, big = real[(1920, 1080)]
    box_small = changed_box(small_frame, draw_overlay(small_frame, small, show_stats=False))
    box_big = changed_box(big_frame, draw_overlay(big_frame, big, show_stats=False))
    ratio = (box_big[3] - box_big[1]) / (box_small[3] - box_small[1])
    assert 1.8 < ratio < 2.7  # short sides 1080 vs 480: 2.25x
    assert box_big[2] < big_frame.shape[1] * 0.5  # still a corner panel, not the whole frame


@pytest.mark.parametrize("size", [(160, 120), (32, 32)])
def test_tiny_frames_are_enlarged_so_text_is_legible(real, size) -> None:
    frame, result = real[size]
    out = draw_overlay(frame, result)
    assert min(out.shape[:2]) == 240
    assert out.shape[0] / out.shape[1] == pytest.approx(frame.shape[0] / frame.shape[1], rel=0.02)
    assert green_run(out) > 0
    kept = draw_overlay(frame, result, min_side=0)
    assert kept.shape == frame.shape


def test_grey_and_bgra_frames_and_no_confident_class(real) -> None:
    frame, result = real[(640, 480)]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    assert draw_overlay(grey, result).shape == (480, 640, 3)
    np.testing.assert_array_equal(draw_overlay(bgra, result), draw_overlay(frame, result))
    nothing = draw_overlay(frame, replace(result, top=[]))
    assert green_run(nothing) == 0
    assert np.any(nothing[:60, :200] != frame[:60, :200])  # "no confident class" is written
    with pytest.raises(ValueError, match="expected an"):
        draw_overlay(np.zeros((4, 4, 5), np.uint8), result)


def test_long_and_non_ascii_labels_stay_inside_the_panel(real) -> None:
    frame, result = real[(640, 480)]
    odd = replace(result, top=[Classification(0, "Ünïcode-label " * 12, 0.9)])
    out = draw_overlay(frame, odd, show_stats=False)
    assert changed_box(frame, out)[2] < frame.shape[1] * 0.6
    assert ascii_text("café") == "caf?"


def test_banner_marks_the_middle(real) -> None:
    frame, result = real[(640, 480)]
    shown = draw_overlay(frame, result)
    paused = draw_banner(shown, "PAUSED")
    h = frame.shape[0]
    assert np.any(paused[h // 2 - 10 : h // 2 + 10] != shown[h // 2 - 10 : h // 2 + 10])
    np.testing.assert_array_equal(paused[h // 2 + 80 : -60], shown[h // 2 + 80 : -60])
    orange = np.all(paused == np.array([0, 140, 255], np.uint8), axis=2)
    assert orange.sum() > 50
