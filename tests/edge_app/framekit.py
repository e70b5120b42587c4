"""Real frames and real ``FrameResult``s for the output tests: CIFAR-10 validation images upscaled
to camera-sized BGR frames and classified by the shipped model."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from converter.data.datasets import Dataset
from edge_app.model import Classifier, resolve_model, top_k
from edge_app.outputs import FrameResult
from edge_app.smoothing import ScoreSmoother


def upscale(rgb: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A CIFAR image as a BGR frame of ``size`` (w, h), like a camera would deliver it."""
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_CUBIC)


def classify_frames(
    dataset: Dataset,
    model_dir: Path,
    indices: list[int] | range,
    *,
    size: tuple[int, int] = (640, 480),
    k: int = 3,
    alpha: float = 1.0,
) -> list[tuple[np.ndarray, FrameResult]]:
    """Run the real model on each chosen image (upscaled to ``size``) and build the loop's results."""
    clf = Classifier(resolve_model(model_dir))
    smoother = ScoreSmoother(alpha)
    out: list[tuple[np.ndarray, FrameResult]] = []
    previous: str | None = None
    last = time.perf_counter()
    for n, i in enumerate(indices):
        frame = upscale(dataset.x[i], size)
        t0 = time.perf_counter()
        image = clf.prepare(frame)
        t1 = time.perf_counter()
        scores = smoother.update(clf.invoke(image))
        t2 = time.perf_counter()
        top = top_k(scores, clf.labels, k)
        label = top[0].label if top else None
        now = time.perf_counter()
        fps = 1.0 / max(now - last, 1e-6)
        last = now
        result = FrameResult(
            index=n,
            time=time.time(),
            top=top,
            latency_ms={"preprocess": (t1 - t0) * 1e3, "invoke": (t2 - t1) * 1e3, "total": (now - t0) * 1e3},
            fps=fps,
            changed=label != previous,
            scores=scores,
        )
        previous = label
        out.append((frame, result))
    return out
