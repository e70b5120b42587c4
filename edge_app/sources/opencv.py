"""OpenCV ``VideoCapture`` backend: a camera index (or ``/dev/videoN``), a video file, or a stream URL.

With ``spec.reduce_to`` (the model input, ``decode = reduced``), an MJPEG file or stream is read
as compressed packets (``CAP_PROP_FORMAT = -1``) and decoded with ``cv2.imdecode(IMREAD_REDUCED_COLOR_N)``
at the smallest scale that still covers the model input in every ``spec.reduce_regions`` (the whole frame,
or each zone: ``preprocess.reduction_for``); ``packet`` keeps the compressed frame for outputs that show it. JPEG's DCT
scaling skips most of the decoding work (640x480 for a 32x32 model: 0.35 instead of 1.04 ms of CPU a frame in
`edge-app bench --decode reduced` on a 2-core AMD EPYC). A USB camera is asked for MJPEG and for its
undecoded buffers (``CAP_PROP_CONVERT_RGB`` off) and decoded the same way, if one probe frame proves
that it really hands over JPEG data.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import SourceError
from edge_app.preprocess import reduction_for
from edge_app.sources.base import SourceSpec, is_stream_url, redact_url
from edge_app.sources.framepool import FramePool

log = logging.getLogger(__name__)

# How long OpenCV's own FFmpeg timeout waits beyond the grabber's watchdog: the watchdog fires
# first and reopens; the backend timeout only makes sure an abandoned read returns eventually.
BACKEND_TIMEOUT_GRACE_S = 2.0
# A video file's unreadable frames (corrupt packets) are skipped; this many failed reads in a row,
# or the position reaching the frame count the header announces, is the real end of the file.
MAX_BAD_FRAMES_IN_A_ROW = 50
REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
MJPEG_FOURCCS = (b"MJPG", b"JPEG", b"AVRN", b"LJPG")


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A decoded frame as BGR uint8 ``(H, W, 3)`` (grey and BGRA frames are converted)."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image)
    return image


def _fourcc(cap: cv2.VideoCapture) -> bytes:
    return int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").upper()


def _frame_size(cap: cv2.VideoCapture) -> tuple[int, int]:
    """(height, width) of the capture's frames."""
    return int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))


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
        self.reduction = 1  # > 1: MJPEG packets decoded at 1/reduction scale
        self.packet: np.ndarray | None = None  # reduced: the compressed frame that read() last decoded

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
        self.reduction = self._reduce(cap)
        self._cap = cap

    def _reduce(self, cap: cv2.VideoCapture) -> int:
        """Switch to compressed MJPEG frames when a reduced decode covers ``spec.reduce_to``; the factor (1: decoded frames)."""
        need = self.spec.reduce_to
        if need is None:
            return 1
        size = _frame_size(cap)
        factor = reduction_for(size, need, self.spec.reduce_regions, self.spec.reduce_cover)
        if factor == 1:
            return 1
        if not (self._camera_packets(cap, factor, size) if self.mode == "camera" else self._file_packets(cap)):
            return 1
        h, w = size
        margin = f", {self.spec.reduce_cover:g}x that for its measured agreement with full decoding" if self.spec.reduce_cover > 1 else ""
        log.info("%s: decoding its MJPEG frames at 1/%d scale (%dx%d; the model needs %dx%d%s)", self.name, factor, w // factor, h // factor,
                 need[1], need[0], margin)
        return factor

    @staticmethod
    def _file_packets(cap: cv2.VideoCapture) -> bool:
        """An MJPEG file or stream: read its packets undecoded (``CAP_PROP_FORMAT = -1``)."""
        return _fourcc(cap) in MJPEG_FOURCCS and bool(cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _camera_packets(self, cap: cv2.VideoCapture, factor: int, size: tuple[int, int]) -> bool:
        """A USB camera: ask for MJPEG and for its undecoded buffers (``CAP_PROP_CONVERT_RGB`` off).

        Kept only if the camera really hands over JPEG data: one probe frame must decode, else the
        camera goes back to decoded frames (some drivers and backends ignore either setting).
        """
        if _fourcc(cap) not in MJPEG_FOURCCS:
            original = cap.get(cv2.CAP_PROP_FOURCC)
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            if _fourcc(cap) not in MJPEG_FOURCCS or _frame_size(cap) != size:
                cap.set(cv2.CAP_PROP_FOURCC, original)  # back as it was
                return False
        if not cap.set(cv2.CAP_PROP_CONVERT_RGB, 0):
            return False
        ok, probe = cap.read()
        decoded = cv2.imdecode(probe.reshape(-1), REDUCED_FLAGS[factor]) if ok and probe is not None and probe.size else None
        if decoded is None or (probe.ndim == 3 and probe.shape[2] == 3):
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
            log.info("%s: its frames arrive decoded, so they are decoded at full size", self.name)
            return False
        return True

    def _next(self, cap: cv2.VideoCapture, recycled: np.ndarray | None = None) -> np.ndarray | None:
        """The next decoded frame, or None when a read or a decode fails."""
        if self.reduction > 1:
            ok, packet = cap.read()
            if not ok or packet is None or packet.size == 0:
                return None
            self.packet = packet.reshape(-1)
            decoded: np.ndarray | None = cv2.imdecode(self.packet, REDUCED_FLAGS[self.reduction])
            return decoded
        ok, frame = cap.read(recycled) if recycled is not None else cap.read()
        return frame if ok else None

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
        recycled = self.pool.free() if self.reduction == 1 else None
        image = self._next(cap, recycled)
        if image is not None and self.reduction == 1 and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
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
            image = self._next(cap)
            if image is not None:
                self.skipped += failed
                log.warning(
                    "%s: skipped %d unreadable frame(s) before frame %d (corrupt data in the file; %d skipped so far)",
                    self.name,
                    failed,
                    self.frames_read + self.skipped,
                    self.skipped,
                )
                return image
            failed += 1
        return None

    def close(self) -> None:
        self.pool.clear()
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
