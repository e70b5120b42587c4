"""OpenCV ``VideoCapture`` backend: a camera index (or ``/dev/videoN``), a video file, or a stream URL."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import SourceError
from edge_app.sources.base import SourceSpec, is_stream_url, redact_url
from edge_app.sources.framepool import FramePool

log = logging.getLogger(__name__)

# How long OpenCV's own FFmpeg timeout waits beyond the grabber's watchdog: the watchdog fires
# first and reopens; the backend timeout only makes sure an abandoned read returns eventually.
BACKEND_TIMEOUT_GRACE_S = 2.0
# A video file's unreadable frames (corrupt packets) are skipped; this many failed reads in a row,
# or the position reaching the frame count the header announces, is the real end of the file.
MAX_BAD_FRAMES_IN_A_ROW = 50


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A decoded frame as BGR uint8 ``(H, W, 3)`` (grey and BGRA frames are converted)."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image)
    return image


class OpenCVSource:
    """A camera (``target`` an int or ``/dev/videoN``), a video file, or an RTSP/HTTP stream URL."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        target = spec.target
        if isinstance(target, int):
            self.mode = "camera"
        elif is_stream_url(target):
            self.mode = "stream"
        elif target.startswith("/dev/"):
            self.mode = "camera"
        else:
            self.mode = "file"
        self.name = spec.describe()
        self.live: bool = spec.live if spec.live is not None else self.mode != "file"
        self.fps: float | None = None  # native frame rate once open (None if the backend does not say)
        self.frame_count: int | None = None  # frames the file's header announces
        self.frames_read = 0
        self.skipped = 0  # unreadable frames of a video file skipped since open() (the grabber counts them)
        self._cap: cv2.VideoCapture | None = None
        self.pool = FramePool()  # decoded frames go into recycled buffers

    def open(self) -> None:
        self.close()
        self.frames_read = 0
        self.skipped = 0
        if self.mode == "file":
            cap = self._open_file(Path(str(self.spec.target)))
        elif self.mode == "stream":
            cap = self._open_stream(str(self.spec.target))
        else:
            cap = self._open_camera(self.spec.target)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.mode == "file" else 0
        self.frame_count = count if count > 0 else None
        self._cap = cap

    def _open_file(self, path: Path) -> cv2.VideoCapture:
        if not path.exists():
            raise SourceError(f"video file {path} does not exist: check the path, or pass an image folder, a stream URL or --camera N")
        if path.is_dir():
            raise SourceError(f"{path} is a folder, not a video file: pass it as --source {path} to read its images")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"video file {path} could not be decoded: it is empty, corrupt or in a format OpenCV's FFmpeg "
                f"cannot read; re-encode it (ffmpeg -i {path} -c:v libx264 out.mp4) or pass another file"
            )
        return cap

    def _open_stream(self, url: str) -> cv2.VideoCapture:
        params: list[int] = []
        open_prop = getattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC", None)
        read_prop = getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", None)
        if open_prop is not None and read_prop is not None:
            params = [
                open_prop,
                int(self.spec.open_timeout_s * 1000),
                read_prop,
                int((self.spec.read_timeout_s + BACKEND_TIMEOUT_GRACE_S) * 1000),
            ]
        started = time.monotonic()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params) if params else cv2.VideoCapture(url)
        if not cap.isOpened():
            cap.release()
            elapsed = time.monotonic() - started
            timeout = self.spec.open_timeout_s
            if elapsed < 0.9 * timeout:  # it failed by itself: say so instead of blaming the timeout
                why = f"it failed after {elapsed:.1f} s (connection refused, host unreachable, a wrong path or not a video stream)"
            else:
                why = f"no answer within {timeout:g} s (the host is down, a firewall drops it, or it is slow to start)"
            raise SourceError(
                f"stream {redact_url(url)} could not be opened: {why}; check the URL, the network and that the camera is streaming "
                "(try it with ffplay or VLC; -v shows FFmpeg's own messages)"
            )
        return cap

    def _open_camera(self, target: int | str) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {target} could not be opened: check the cable, `v4l2-ctl --list-devices`, "
                "that no other program uses it, or pick another --camera index"
            )
        spec = self.spec
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer queued frames in the driver: lower latency where supported
        if spec.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
        if spec.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
        if spec.fps:
            cap.set(cv2.CAP_PROP_FPS, spec.fps)
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), float(cap.get(cv2.CAP_PROP_FPS)))
        wanted = (spec.width or got[0], spec.height or got[1], spec.fps or got[2])
        if got[:2] != wanted[:2] or abs(got[2] - wanted[2]) > 0.5:
            log.warning("camera %s gives %dx%d at %.1f fps (asked for %dx%d at %.1f fps)", target, *got, *wanted)
        else:
            log.info("camera %s opened at %dx%d, %.1f fps", target, *got)
        return cap

    def read(self) -> np.ndarray | None:
        cap = self._cap
        if cap is None:
            return None
        recycled = self.pool.free()
        ok, frame = cap.read(recycled) if recycled is not None else cap.read()
        image: np.ndarray | None = frame if ok else None
        if image is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            self.pool.keep(image, recycled)
        if image is None:
            if self.mode != "file":
                return None
            image = self._skip_bad_frames(cap)
            if image is None:
                if self.frame_count is not None and self.frames_read + self.skipped < self.frame_count:
                    log.warning(
                        "%s ended after %d of the %d frames its header announces: the file is truncated or corrupt; "
                        "the frames before the damage were delivered",
                        self.name,
                        self.frames_read,
                        self.frame_count,
                    )
                return None
        self.frames_read += 1
        return as_bgr(np.asarray(image))

    def _skip_bad_frames(self, cap: cv2.VideoCapture) -> np.ndarray | None:
        """After a failed read of a file: the next readable frame (the bad ones counted in ``skipped``), or None at the end."""
        failed = 1
        while failed < MAX_BAD_FRAMES_IN_A_ROW:
            position = cap.get(cv2.CAP_PROP_POS_FRAMES)
            if self.frame_count is not None and position >= self.frame_count:
                return None  # the real end
            ok, image = cap.read()
            if ok and image is not None:
                self.skipped += failed
                log.warning(
                    "%s: skipped %d unreadable frame(s) before frame %d (corrupt data in the file; %d skipped so far)",
                    self.name,
                    failed,
                    self.frames_read + self.skipped,
                    self.skipped,
                )
                return np.asarray(image)
            failed += 1
        return None

    def close(self) -> None:
        self.pool.clear()
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
