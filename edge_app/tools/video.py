"""The tools' input video: a reproducible synthetic MJPG clip (no camera, no data needed) and what a video file holds."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import SourceError


def synthetic_video(path: Path, frames: int = 300, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> Path:
    """A reproducible MJPG video of coloured shapes moving over a gradient."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write a synthetic video to {path}: check that the folder is writable")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)), ((xx + yy) * 255 // max(1, w + h - 2))], -1).astype(np.uint8)
    shapes = [(rng.integers(0, w), rng.integers(0, h), rng.integers(20, h // 4), tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(6)]
    for i in range(frames):
        frame = np.roll(base, 4 * i, axis=1)
        for k, (x, y, r, color) in enumerate(shapes):
            cx = int(x + 60 * math.sin(0.05 * i + k)) % w
            cy = int(y + 40 * math.cos(0.07 * i + k)) % h
            if k % 2:
                cv2.circle(frame, (cx, cy), int(r), color, cv2.FILLED)
            else:
                cv2.rectangle(frame, (cx - int(r), cy - int(r) // 2), (cx + int(r), cy + int(r) // 2), color, cv2.FILLED)
        writer.write(frame)
    writer.release()
    return path


def video_info(path: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (width, height)) of a video file; ``SourceError`` if OpenCV cannot read it."""
    if not path.is_file():
        raise SourceError(f"bench source {path} is not a video file: pass a video file or --source synthetic")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"video file {path} could not be decoded: pass a video OpenCV can read, or --source synthetic")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return count, size
