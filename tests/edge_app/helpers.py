"""Small helpers the edge_app tests share: polling for a condition, decoding a test video, reading a JSONL log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def wait_until(condition: Callable[[], object], timeout: float = 15.0, step: float = 0.05) -> bool:
    """Poll ``condition`` every ``step`` seconds until it is true or ``timeout`` has passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def decoded_frames(video: Path) -> list[np.ndarray]:
    """Every frame of ``video`` as OpenCV decodes it (BGR)."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
