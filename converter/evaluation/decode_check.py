"""How far ``edge-app --decode reduced`` may shrink JPEG frames for one model, measured, not assumed.

Decoding an MJPEG frame at 1/2, 1/4 or 1/8 scale (JPEG DCT scaling) averages 2x2, 4x4 or 8x8 blocks that do not line
up with the pixels the model's resize averages, so a model input differs from the full-size decode's by a level or
two. Whether that changes the model's answers depends on the model and on what the camera sees: on real photos the
224 px dogs-vs-cats model keeps its top-1 on 99.7 % of frames at 1/2, while the 32x32 CIFAR-10 model changes it on
5 % at 1/8 (a second full-size decode of the same frame, re-encoded at JPEG quality 85, already changes it on 1.2 %).

``measure`` shows each image to the model as a camera would send it (scaled to the height of a 640x480 frame, centred,
edges reflected, JPEG quality 90), decodes it in full and at each reduction, and counts the frames on which the top-1
stays that of full decoding. A reduction passes when that share is at least ``MIN_AGREEMENT`` (the performance issue's
99 %) or, where even the second full-size decode agrees less often, within ``SLACK`` of that noise floor, and every
smaller reduction passes too. The largest passing one sets ``cover``: how many model inputs per side the reduced crop
must still be, which the device reads from the manifest (``decode.cover``), so it never decodes smaller than what was
measured to agree, whatever the camera's resolution. convert-model records it for every bundle, on its validation
images; ``check-decode`` measures it for an existing bundle, on photos with real detail with ``--frames``, and
``--write`` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from converter.data.datasets import stratified_sample
from converter.errors import DataError, ModelError
from edge_app.errors import ModelError as DeviceModelError
from edge_app.model import Classifier, resolve_model
from edge_app.sources.opencv import REDUCED_FLAGS

log = logging.getLogger(__name__)

FRAME_HW = (480, 640)  # a VGA camera: what most USB webcams and the test videos send
JPEG_QUALITY = 90  # MJPEG cameras send 80-95
SECOND_QUALITY = 85  # the same frame re-encoded: a second full-size pipeline, whose agreement is the noise floor
MIN_AGREEMENT = 0.99  # same top-1 as full decoding on at least this share of frames...
SLACK = 0.01  # ...or, where even a second full-size decode agrees less often, within this of it
FACTORS = tuple(sorted(REDUCED_FLAGS))  # what the device's OpenCVSource decodes at: 2, 4, 8
FLAGS = {1: cv2.IMREAD_COLOR, **REDUCED_FLAGS}


def camera_frames(images: np.ndarray, frame_hw: tuple[int, int] = FRAME_HW, quality: int = JPEG_QUALITY) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each RGB (or grey) image as a camera frame: scaled to the frame's height in its centre, edges reflected; as JPEG
    bytes at ``quality`` and at ``SECOND_QUALITY`` (the second full-size pipeline that sets the noise floor)."""
    fh, fw = frame_hw
    for img in images:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 and img.shape[2] == 3 else cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
        h, w = bgr.shape[:2]
        side = (fh, min(fw, round(w * fh / h)))
        scaled = cv2.resize(bgr, (side[1], side[0]), interpolation=cv2.INTER_LINEAR if side[0] > h else cv2.INTER_AREA)
        left = (fw - side[1]) // 2
        frame = cv2.copyMakeBorder(scaled, 0, 0, left, fw - side[1] - left, cv2.BORDER_REFLECT_101)
        encoded = [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, q]) for q in (quality, SECOND_QUALITY)]
        if not all(ok for ok, _ in encoded):
            raise DataError("OpenCV cannot encode JPEG frames here; reinstall opencv-python")
        yield encoded[0][1], encoded[1][1]


def passing(agreement: dict[int, float], floor: float, least: float = MIN_AGREEMENT, slack: float = SLACK) -> dict[int, bool]:
    """Which reductions agree well enough: on ``least`` of the frames, or within ``slack`` of ``floor`` (how often a second
    full-size pipeline keeps the top-1) when even that is below ``least``; no reduction after one that fails."""
    bar = min(least, floor - slack)
    ok, out = True, {}
    for f in sorted(agreement):
        ok = ok and agreement[f] >= bar
        out[f] = ok
    return out


def cover_for(agreement: dict[int, float], floor: float, need: int, frame_side: int = FRAME_HW[0]) -> float:
    """The reduced crop's least size, in model inputs per side, that allows exactly the reductions that pass.

    ``need``: the model input's smaller side; ``frame_side``: the measured frames' crop side. 1.0 (the plain rule: never
    an upscale) when every reduction passes."""
    ok = [f for f, good in passing(agreement, floor).items() if good]
    if len(ok) == len(agreement):
        return 1.0
    largest = max(ok, default=1)
    return round(max(1.0, frame_side / largest / need), 3)


def measure(model: Path, images: np.ndarray, limit: int | None = 1000, labels: np.ndarray | None = None, *, seed: int = 0,
            content: str = "validation images") -> dict[str, Any]:
    """Top-1 agreement of reduced with full decoding for the model bundle (or .tflite) ``model`` on ``images`` shown as
    camera frames; the manifest's ``decode``. ``limit``: at most this many images (stratified by ``labels`` when given),
    since every one is decoded five times; ``content``: what the images are, recorded."""
    if limit is not None and len(images) > limit:
        pick = stratified_sample(labels, max(1, limit // len(np.unique(labels))), seed) if labels is not None else np.arange(limit)
        images = images[pick]
    if len(images) == 0:
        raise DataError("no images to check reduced decoding on; pass a dataset with validation images")
    try:
        classifier = Classifier(resolve_model(model), num_threads=1)
    except DeviceModelError as exc:
        raise ModelError(str(exc)) from exc

    def top(data: np.ndarray, flag: int) -> int:
        frame = cv2.imdecode(data, flag)
        if frame is None:
            raise DataError("OpenCV cannot decode the JPEG frames it encoded; reinstall opencv-python")
        return int(np.argmax(classifier.scores(frame)))

    tops: dict[int, list[int]] = {f: [] for f in FLAGS}
    second: list[int] = []
    for data, other in camera_frames(images):
        for f, flag in FLAGS.items():
            tops[f].append(top(data, flag))
        second.append(top(other, FLAGS[1]))
    full = np.array(tops[1])
    agreement = {f: float(np.mean(np.array(tops[f]) == full)) for f in FACTORS}
    floor = float(np.mean(np.array(second) == full))
    cover = cover_for(agreement, floor, min(classifier.size))
    log.info("reduced decoding of %dx%d JPEG frames keeps the top-1 of full decoding on %s of %d %s (a second full decode, "
             "at JPEG quality %d: %.1f%%): cover %.3g", FRAME_HW[1], FRAME_HW[0], ", ".join(f"{a:.1%} at 1/{f}" for f, a in agreement.items()),
             len(full), content, SECOND_QUALITY, floor * 100, cover)
    return {
        "cover": cover,
        "agreement": {str(f): round(a, 4) for f, a in agreement.items()},
        "full_decode_floor": round(floor, 4),
        "min_agreement": MIN_AGREEMENT,
        "slack": SLACK,
        "images": len(full),
        "content": content,
        "frame": [FRAME_HW[0], FRAME_HW[1]],
        "jpeg_quality": [JPEG_QUALITY, SECOND_QUALITY],
    }


__all__ = ["FRAME_HW", "MIN_AGREEMENT", "camera_frames", "cover_for", "measure"]
