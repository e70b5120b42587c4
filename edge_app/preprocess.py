"""Frame to model input: centre crop to the model's aspect ratio, resize, colour order, uint8.

The converter's dataset loader uses the same geometry, so training and inference agree.
"""

from __future__ import annotations

import cv2
import numpy as np


def center_crop_to_aspect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred crop of ``image`` with the aspect ratio ``width / height``."""
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        nw = max(1, round(h * target))
        x0 = (w - nw) // 2
        return image[:, x0 : x0 + nw]
    if w / h < target:
        nh = max(1, round(w / target))
        y0 = (h - nh) // 2
        return image[y0 : y0 + nh]
    return image


REDUCTIONS = (8, 4, 2)  # what cv2.imdecode's IMREAD_REDUCED_COLOR_N can do (JPEG DCT scaling)


def reduction_for(
    frame_hw: tuple[int, int], need_hw: tuple[int, int], regions: tuple[tuple[float, float], ...] = ((1.0, 1.0),), cover: float = 1.0
) -> int:
    """The largest JPEG decode reduction (8, 4, 2, else 1) after which the centre crop to ``need_hw``'s aspect of every
    region still covers ``cover`` times ``need_hw``: decoding 640x480 at 1/8 still gives a 60x60 crop for a 32x32 model,
    never an upscale.

    ``regions``: what the model is given, as (height, width) fractions of the frame: the whole frame, or each zone.
    ``cover``: the model's own margin, measured by ``check-decode`` (the manifest's ``decode.cover``): a model whose answers
    change when each of its input pixels averages too few decoded ones needs a larger decode than it takes."""
    nh, nw = need_hw
    if min(*frame_hw, nh, nw) <= 0 or not regions:
        return 1

    def covered(f: int) -> bool:
        for fh, fw in regions:
            h, w = frame_hw[0] * fh, frame_hw[1] * fw
            if min(h, w) <= 0:
                return False
            crop_h, crop_w = (h, h * nw / nh) if w / h > nw / nh else (w * nh / nw, w)
            if crop_h // f < nh * cover or crop_w // f < nw * cover:
                return False
        return True

    return next((f for f in REDUCTIONS if covered(f)), 1)


def fit_to_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect ratio of ``size`` (h, w), then resize to it; keeps a channel axis."""
    h, w = size
    crop = center_crop_to_aspect(image, h, w)
    if crop.shape[:2] != (h, w):
        shrinking = crop.shape[0] > h
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return crop[:, :, None] if crop.ndim == 2 else crop


def preprocess(frame_bgr: np.ndarray, size: tuple[int, int], channels: int = 3, color_order: str = "RGB") -> np.ndarray:
    """A BGR (or grey) uint8 frame to a ``(H, W, channels)`` uint8 model input."""
    crop = fit_to_size(frame_bgr, size)
    if channels == 1:
        if crop.shape[2] == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[:, :, None]
        return np.ascontiguousarray(crop)
    if crop.shape[2] == 1:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    if color_order.upper() == "RGB":
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(crop)
