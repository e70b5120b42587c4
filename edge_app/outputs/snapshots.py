"""``SnapshotSink``: JPEGs of interesting frames in a folder that never grows past ``max_files``.

A frame is saved when its top-1 label changes (``on_change``) or its top-1 score reaches
``min_score``. Files are named ``snap-<UTC time>-<frame>-<label>.jpg`` so they sort by time; the
oldest ``snap-*.jpg`` files are deleted beyond ``max_files`` (other files are left alone). Each
file is written under a temporary name and renamed, so a crash never leaves a truncated JPEG.

A folder that cannot be created or written at start is a one-line ``OutputError``; later write
errors are logged once, counted in ``dropped`` and retried every ``retry_s`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import ConfigError, OutputError
from edge_app.outputs import FrameResult
from edge_app.outputs.draw import draw_overlay
from edge_app.outputs.retry import RetryingOutput

log = logging.getLogger(__name__)

PREFIX = "snap-"
DEFAULT_RETRY_S = 5.0


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._")[:40] or "none"


class SnapshotSink(RetryingOutput):
    """Saves JPEGs of label changes and confident frames into a bounded folder (see the module doc)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_files: int = 200,
        on_change: bool = True,
        min_score: float | None = None,
        annotate: bool = False,
        jpeg_quality: int = 90,
        min_interval_s: float = 0.0,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> None:
        if max_files < 1:
            raise ConfigError(f"snapshot max_files must be at least 1, got {max_files}")
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            raise ConfigError(f"snapshot min_score must be between 0 and 1, got {min_score}; e.g. 0.8 saves frames scored 80% or more")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"JPEG quality must be 1..100, got {jpeg_quality}")
        self.folder = Path(folder)
        super().__init__(f"snapshot folder {self.folder}", "snapshot", retry_s, log)
        self.max_files = max_files
        self.on_change = on_change
        self.min_score = min_score
        self.annotate = annotate
        self.jpeg_quality = jpeg_quality
        self.min_interval_s = min_interval_s
        self.saved = 0
        self.deleted = 0
        self._last_score_save = float("-inf")
        self._closed = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".probe-"):
                pass
        except OSError as exc:
            raise OutputError(
                f"cannot write snapshots to {self.folder}: {exc.strerror or exc}; choose a writable folder or fix its permissions"
            ) from exc
        self._files: deque[Path] = deque(sorted(self.folder.glob(f"{PREFIX}*.jpg")))
        self._prune()

    def wants(self, result: FrameResult) -> bool:
        """Whether ``result`` calls for a snapshot."""
        if not result.top:
            return False
        if self.on_change and result.changed:
            return True
        if self.min_score is not None and result.score >= self.min_score:
            return result.scene_time() - self._last_score_save >= self.min_interval_s  # the scene's time: a file's own
        return False

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        """``--decode reduced``: the compressed frame, decoded at full size only if it is to be kept."""
        if self._closed or not self.wants(result):
            return
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        if frame is None:
            log.error("cannot decode frame %d for a snapshot: not a JPEG", result.index)
            self.dropped += 1
            return
        self.write(frame, result)

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self._closed or not self.wants(result):
            return
        if self._backing_off():
            return
        if not (self.on_change and result.changed):
            self._last_score_save = result.scene_time()
        image = draw_overlay(frame, result, min_side=0) if self.annotate else frame
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            log.error("cannot encode frame %d as JPEG (shape %s)", result.index, getattr(frame, "shape", None))
            self.dropped += 1
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.time)) + f".{int(result.time * 1000) % 1000:03d}Z"
        path = self.folder / f"{PREFIX}{stamp}-{result.index:06d}-{_safe(result.label or '')}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self._failed(exc)
            return
        self._succeeded()
        self.saved += 1
        self._files.append(path)
        self._prune()

    def _prune(self) -> None:
        while len(self._files) > self.max_files:
            old = self._files.popleft()
            try:
                old.unlink(missing_ok=True)
                self.deleted += 1
            except OSError as exc:
                log.warning("cannot delete old snapshot %s: %s", old, exc.strerror or exc)

    @property
    def files(self) -> list[Path]:
        """The snapshots this sink keeps, oldest first."""
        return list(self._files)

    def close(self) -> None:
        self._closed = True
        self._report_dropped()
