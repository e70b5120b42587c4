"""Zones x smoothing x debounce on real CIFAR-10 photos with the shipped model: the same answers as ``Classifier.classify``, smoothed, debounced, per zone."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.errors import ConfigError
from edge_app.model import Classification, top_k
from edge_app.pipeline.modelslot import OpenModel
from edge_app.pipeline.zoneclassify import ZoneClassifier, ZoneState
from edge_app.sources import SourceSpec
from edge_app.zones import ZoneResult, parse_zones
from tests.edge_app.pipeline.kit import frame

SPEC = SourceSpec(kind="opencv", target="clip.avi")


def classify(zc: ZoneClassifier, state: ZoneState, model: OpenModel, image: np.ndarray, *, now: float = 100.0, scale: int = 1,
             source: str = "cam") -> tuple[np.ndarray, list[Classification], list[ZoneResult]]:
    classifier = model[1]
    f = frame(image, scale=scale)
    zc.check(state, f, SPEC)
    return zc.classify(state, classifier, zc.prepare_for(classifier)(image), f, now=now, source=source)


def test_the_whole_frame_gives_classifiers_own_answer_and_no_states_without_debounce(cifar10_model: OpenModel, photos: list[np.ndarray]) -> None:
    zc = ZoneClassifier([], smoothing=1.0, debounce=None, k=3, threshold=0.0)
    state = zc.new_state()
    classifier = cifar10_model[1]
    assert not zc.reports_states and len(state.smoothers) == 1 and zc.state_names(["cam"]) == []
    labels = []
    for image in photos[:6]:
        scores, top, states = classify(zc, state, cifar10_model, image)
        assert states == []
        assert [c.label for c in top] == [c.label for c in classifier.classify(image, k=3)]
        assert scores == pytest.approx(classifier.scores(image), abs=1e-6)
        labels.append(top[0].label)
    assert len(set(labels)) > 1  # real photos of different classes: the answers are not all the same


def test_smoothing_averages_frames_and_a_reset_starts_afresh(cifar10_model: OpenModel, photos: list[np.ndarray]) -> None:
    zc = ZoneClassifier([], smoothing=0.5, debounce=None, k=3, threshold=0.0)
    state = zc.new_state()
    classifier = cifar10_model[1]
    a, b = classifier.scores(photos[0]), classifier.scores(photos[1])
    classify(zc, state, cifar10_model, photos[0])
    smoothed, _, _ = classify(zc, state, cifar10_model, photos[1])
    assert smoothed == pytest.approx(0.5 * b + 0.5 * a, abs=1e-6)
    state.reset_scores()
    fresh, _, _ = classify(zc, state, cifar10_model, photos[1])
    assert fresh == pytest.approx(b, abs=1e-6)


def test_debounce_holds_the_whole_frames_state_until_two_frames_agree(cifar10_model: OpenModel, photos: list[np.ndarray]) -> None:
    zc = ZoneClassifier([], smoothing=1.0, debounce=2, k=1, threshold=0.0)
    state = zc.new_state()
    assert zc.reports_states and zc.state_names(["cam"]) == ["frame"]
    label = cifar10_model[1].classify(photos[0], k=1)[0].label
    _, _, [first] = classify(zc, state, cifar10_model, photos[0], now=10.0)
    assert (first.name, first.state, first.state_changed, first.box) == ("frame", None, False, None)
    _, _, [second] = classify(zc, state, cifar10_model, photos[0], now=11.0)
    assert (second.state, second.state_changed, second.dwell_s) == (label, True, 0.0)
    _, _, [third] = classify(zc, state, cifar10_model, photos[0], now=13.5)
    assert (third.state, third.state_changed, third.dwell_s) == (label, False, 2.5)
    state.reset_states()  # a model with other labels
    _, _, [after] = classify(zc, state, cifar10_model, photos[0], now=14.0)
    assert after.state is None


def test_each_zone_is_classified_on_its_own_crop_with_boxes_in_camera_pixels(cifar10_model: OpenModel, photos: list[np.ndarray]) -> None:
    zones = parse_zones(["left:0,0,0.5,1", "right:0.5,0,0.5,1"])
    zc = ZoneClassifier(zones, smoothing=1.0, debounce=None, k=3, threshold=0.0, several=True)
    state = zc.new_state()
    classifier = cifar10_model[1]
    image = np.hstack([photos[2][:, :64], photos[5][:, 64:]])  # two photos side by side: 96x128
    assert zc.prepare_for(classifier)(image).shape == (2, *classifier.size, 3)
    assert zc.state_names(["door", "yard"]) == ["door.left", "door.right", "yard.left", "yard.right"]
    scores, top, (left, right) = classify(zc, state, cifar10_model, image, source="door", scale=2)  # a 1/2 reduced decode of a 192x256 frame
    assert (left.name, right.name) == ("door.left", "door.right")
    assert left.box == (0, 0, 128, 192) and right.box == (128, 0, 256, 192)
    assert [c.label for c in left.top] == [c.label for c in classifier.classify(image[:, :64], k=3)]
    assert [c.label for c in right.top] == [c.label for c in classifier.classify(image[:, 64:], k=3)]
    assert [c.label for c in top] == [c.label for c in left.top]  # the frame's own result is the first zone's
    assert [c.label for c in top] == [c.label for c in top_k(scores, classifier.labels, 3)]


def test_a_pixel_zone_outside_the_frame_is_an_error_checked_once_per_size(cifar10_model: OpenModel, photos: list[np.ndarray]) -> None:
    zc = ZoneClassifier(parse_zones(["door:60,10,60,80"]), smoothing=1.0, debounce=None, k=3, threshold=0.0)
    state = zc.new_state()
    classify(zc, state, cifar10_model, photos[0])  # 96x128: fits
    assert state.checked == (96, 128)
    with pytest.raises(ConfigError, match=r"zone door:60,10,60,80 px does not fit the 64x48 frame of video file clip\.avi"):
        zc.check(state, frame(photos[0][:48, :64]), SPEC)
    assert state.checked == (96, 128)
