"""Small helpers the edge_app tests share: polling for a condition, decoding a test video, reading a JSONL log,
and running ``edge-app`` as a user does (``python -m edge_app`` in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    """The test environment without systemd's or a desktop's variables, with this checkout importable."""
    clean = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "DISPLAY", "WAYLAND_DISPLAY")}
    return {**clean, "PYTHONPATH": str(REPO), **extra}


def edge_app(*args: str, timeout: float = 30, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_app", *args], capture_output=True, text=True, timeout=timeout, env=env(**(extra_env or {})), check=False
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``edge-app: error:`` line (the last line of stderr), asserting there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("edge-app: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]
