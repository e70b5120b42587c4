"""Training-image augmentation shared by every recipe: flips, reflect translation, cutout, random resized crops."""

from __future__ import annotations

import math

import cv2
import numpy as np


def augment_batch(x: np.ndarray, rng: np.random.Generator, pad: int = 2, flip: np.ndarray | None = None) -> np.ndarray:
    """Horizontal flip (at random, or where ``flip`` says) and random translation by up to ``pad`` px (reflect padding)."""
    n, h, w, _ = x.shape
    flip = np.asarray(rng.random(n)) < 0.5 if flip is None else flip
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    out = np.empty_like(x)
    for sy in range(2 * pad + 1):
        for sx in range(2 * pad + 1):
            sel = np.flatnonzero((dy == sy) & (dx == sx))
            if sel.size:
                out[sel] = padded[sel, sy : sy + h, sx : sx + w]
    return out


def cutout_batch(x: np.ndarray, rng: np.random.Generator, size: int, fill: np.ndarray) -> np.ndarray:
    """A ``size`` x ``size`` square at a random place (its centre anywhere in the image, clipped at the edges) set to ``fill``."""
    n, h, w, _ = x.shape
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    y0, x0 = np.clip(cy - size // 2, 0, h), np.clip(cx - size // 2, 0, w)
    y1, x1 = np.clip(cy - size // 2 + size, 0, h), np.clip(cx - size // 2 + size, 0, w)
    rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
    in_rows = (rows >= np.asarray(y0)[:, None]) & (rows < np.asarray(y1)[:, None])
    in_cols = (cols >= np.asarray(x0)[:, None]) & (cols < np.asarray(x1)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return np.where(mask[..., None], fill.astype(x.dtype), x)


def alternating_flips(n: int, epoch: int, seed: int) -> np.ndarray:
    """Which of ``n`` images to flip in ``epoch``: a fixed coin per image, inverted on odd epochs."""
    first = np.random.default_rng([seed, 0xF11B]).random(n) < 0.5
    return first ^ bool(epoch % 2)


def augmented_view(img: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.35, 1.0),
                   jitter: float = 0.2) -> np.ndarray:
    """A random resized crop (``scale`` of the area, aspect 3/4-4/3) at the image's size, flipped half the time,
    brightness, contrast and saturation each scaled by up to ``jitter``."""
    h, w = img.shape[:2]
    cw, ch = w, h
    for _ in range(10):
        area = rng.uniform(*scale) * h * w
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        tw, th = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < tw <= w and 0 < th <= h:
            cw, ch = tw, th
            break
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if out.ndim == 2:
        out = out[:, :, None]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if jitter:
        bright, contrast, sat = 1 + rng.uniform(-jitter, jitter, 3)
        grey = out.mean(2, keepdims=True)
        out = grey + (out - grey) * sat
        mean = out.mean()
        out = ((out - mean) * contrast + mean) * bright
    return np.clip(out, 0, 255).astype(np.uint8)
