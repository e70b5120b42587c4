"""Hand-crafted image features for the classical baselines, from scikit-image.

Every extractor is one small class with the :class:`FeatureExtractor` interface: ``extract``
turns a batch of uint8 images ``(N, H, W, C)`` into a float32 matrix ``(N, D)``. They are chosen
by name from :data:`FEATURES`; ``"hog+color"`` concatenates several. :func:`extract_features`
runs an extractor over a large set in chunks, in parallel worker processes (joblib) when the set
is large enough to pay for them, and reports progress.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from joblib import Parallel, delayed
from skimage.color import rgb2hsv
from skimage.feature import hog, local_binary_pattern

from converter.errors import ConverterError

log = logging.getLogger(__name__)


class FeatureExtractor(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def extract(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` (C = 3 RGB or 1 grey) -> float32 ``(N, D)``."""
        ...


def to_grey(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` luminance (ITU-R BT.601, as OpenCV) of RGB or grey images."""
    if images.shape[-1] == 1:
        return images[..., 0]
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(images.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)


def grid_histograms(codes: np.ndarray, n_bins: int, grid: int) -> np.ndarray:
    """Per-cell normalised histograms of integer ``codes`` ``(N, H, W)`` on a ``grid x grid`` layout.

    Vectorised over the batch with one ``bincount``; returns ``(N, grid * grid * n_bins)``.
    """
    n, h, w = codes.shape
    rows = np.minimum(np.arange(h) * grid // h, grid - 1)
    cols = np.minimum(np.arange(w) * grid // w, grid - 1)
    cell = (rows[:, None] * grid + cols[None, :]).astype(np.int64)  # (H, W)
    flat = (np.arange(n, dtype=np.int64)[:, None, None] * (grid * grid) + cell[None]) * n_bins + codes.astype(np.int64)
    hist = np.bincount(flat.ravel(), minlength=n * grid * grid * n_bins).astype(np.float32)
    hist = hist.reshape(n, grid * grid, n_bins)
    hist /= np.maximum(hist.sum(-1, keepdims=True), 1.0)
    return hist.reshape(n, -1)


@dataclass(frozen=True)
class HogFeatures:
    """Histograms of oriented gradients on an ``cells x cells`` grid (cell size follows the image size).

    Colour images use the strongest gradient across channels (``channel_axis=-1``).
    """

    orientations: int = 9
    cells: int = 8
    block: int = 2
    name: str = "hog"
    description: str = "HOG, 9 orientations, 8x8 cells, 2x2 blocks (L2-Hys)"

    def extract(self, images: np.ndarray) -> np.ndarray:
        h, w = images.shape[1:3]
        ppc = (max(2, h // self.cells), max(2, w // self.cells))
        colour = images.shape[-1] == 3
        out = [
            hog(
                img if colour else img[..., 0],
                orientations=self.orientations,
                pixels_per_cell=ppc,
                cells_per_block=(self.block, self.block),
                block_norm="L2-Hys",
                transform_sqrt=True,
                channel_axis=-1 if colour else None,
            )
            for img in images
        ]
        return np.asarray(out, dtype=np.float32).reshape(len(images), -1)


@dataclass(frozen=True)
class LbpFeatures:
    """Uniform local binary patterns (rotation-invariant), histogrammed per cell of a grid.

    ``grid=1`` is a single global histogram; the default 4x4 grid keeps coarse layout.
    """

    points: int = 8
    radius: float = 1.0
    grid: int = 4
    name: str = "lbp"
    description: str = "uniform LBP (P=8, R=1), histograms on a 4x4 grid"

    def extract(self, images: np.ndarray) -> np.ndarray:
        grey = to_grey(images)
        codes = np.stack([local_binary_pattern(g, self.points, self.radius, method="uniform") for g in grey])
        return grid_histograms(codes.astype(np.int64), self.points + 2, self.grid)


@dataclass(frozen=True)
class ColorHistogram:
    """A joint HSV histogram (hue x saturation x value), normalised; grey images get an intensity histogram."""

    bins: tuple[int, int, int] = (8, 4, 4)
    grey_bins: int = 32
    name: str = "color"
    description: str = "HSV colour histogram, 8x4x4 joint bins"

    def extract(self, images: np.ndarray) -> np.ndarray:
        if images.shape[-1] == 1:
            idx = images[..., 0].astype(np.int64) * self.grey_bins // 256
            return grid_histograms(idx, self.grey_bins, 1)
        hsv = rgb2hsv(images)  # vectorised over the batch, each channel in [0, 1]
        bh, bs, bv = self.bins
        q = [np.minimum((hsv[..., i] * b).astype(np.int64), b - 1) for i, b in enumerate(self.bins)]
        joint = (q[0] * bs + q[1]) * bv + q[2]
        return grid_histograms(joint, bh * bs * bv, 1)


@dataclass(frozen=True)
class RawPixels:
    """The pixels themselves, scaled to [0, 1], after an area resize to at most ``max_side`` px."""

    max_side: int = 32
    name: str = "raw"
    description: str = "raw pixels, at most 32x32, scaled to [0, 1]"

    def extract(self, images: np.ndarray) -> np.ndarray:
        h, w = images.shape[1:3]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            images = np.stack([cv2.resize(img, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1) for img in images])
        return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class CombinedFeatures:
    """Several extractors side by side (``--features hog+color``)."""

    parts: tuple[FeatureExtractor, ...]

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)

    @property
    def description(self) -> str:
        return " + ".join(p.description for p in self.parts)

    def extract(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([p.extract(images) for p in self.parts], axis=1)


FEATURES: dict[str, Callable[[], FeatureExtractor]] = {
    "hog": HogFeatures,
    "lbp": LbpFeatures,
    "lbp-global": lambda: LbpFeatures(grid=1, name="lbp-global", description="uniform LBP (P=8, R=1), one global histogram"),
    "color": ColorHistogram,
    "raw": RawPixels,
}
DEFAULT_FEATURES = ("hog", "lbp", "color", "raw")


def get_feature(name: str) -> FeatureExtractor:
    """An extractor by name; ``a+b`` concatenates extractors ``a`` and ``b``."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    unknown = [p for p in parts if p not in FEATURES]
    if not parts or unknown:
        raise ConverterError(f"unknown feature {name!r}: choose from {', '.join(FEATURES)} (combine with +, e.g. hog+color)")
    if len(parts) == 1:
        return FEATURES[parts[0]]()
    return CombinedFeatures(tuple(FEATURES[p]() for p in parts))


def parse_features(text: str | Sequence[str]) -> list[FeatureExtractor]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    return [get_feature(n) for n in names if n]


def extract_features(
    extractor: FeatureExtractor,
    images: np.ndarray,
    n_jobs: int = -1,
    chunk_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``extractor`` over ``images`` in chunks; parallel worker processes when there are several chunks.

    ``progress(done_images, total_images)`` is called after each chunk.
    """
    n = len(images)
    if n == 0:
        raise ConverterError("no images to extract features from")
    chunks = [slice(i, min(n, i + chunk_size)) for i in range(0, n, chunk_size)]
    out: list[np.ndarray] = []
    done = 0
    if len(chunks) == 1 or n_jobs == 1:
        results = (extractor.extract(images[s]) for s in chunks)
    else:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator")
        results = parallel(delayed(extractor.extract)(images[s]) for s in chunks)
    for s, feats in zip(chunks, results, strict=True):
        out.append(feats)
        done += s.stop - s.start
        if progress is not None:
            progress(done, n)
    return np.concatenate(out)


def feature_dim(extractor: FeatureExtractor, image_shape: tuple[int, int, int]) -> int:
    return int(extractor.extract(np.zeros((1, *image_shape), dtype=np.uint8)).shape[1])


def log_progress(label: str, every: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress`` callback that logs about every ``every`` of the way."""
    state = {"next": 0.0}

    def report(done: int, total: int) -> None:
        frac = done / total
        if frac + 1e-9 >= state["next"] or done == total:
            log.info("%s: %d/%d images (%d%%)", label, done, total, math.floor(100 * frac))
            state["next"] = frac + every

    return report
