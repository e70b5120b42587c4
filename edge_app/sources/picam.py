"""Raspberry Pi CSI camera through picamera2 (libcamera), imported only when this source opens.

With ``spec.reduce_to`` (``decode = reduced`` and nothing that shows or keeps frames: the model input) the
camera's second, ``lores`` stream, scaled by the ISP to just cover the model input (64x48 for a
32x32 model), is what the app reads, as Raspberry Pi's own TensorFlow example does: the CPU never
touches a full-size frame. Otherwise the ``main`` stream is read at the requested size.
"""

from __future__ import annotations

import importlib
import logging
import math
from typing import Any

import cv2
import numpy as np

from edge_app.errors import SourceError
from edge_app.sources.base import SourceSpec

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 480)
LORES_ALIGN = 64  # lores widths a multiple of this keep the YUV420 rows unpadded on the Pi 4 and Pi 5 ISPs


def lores_size(main: tuple[int, int], need_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(w, h) of the smallest ISP-scaled stream with ``main``'s aspect whose centre crop still covers ``need_hw``; None when main is no bigger."""
    w, h = main
    nh, nw = need_hw
    crop_w, crop_h = (h * nw / nh, h) if w / h > nw / nh else (w, w * nh / nw)
    scale = max(nw / crop_w, nh / crop_h)
    lw = min(w, LORES_ALIGN * math.ceil(w * scale / LORES_ALIGN))
    lh = min(h, 2 * math.ceil(lw * h / w / 2))
    return None if (lw, lh) == (w, h) else (lw, lh)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS run sudo apt install python3-picamera2 "
    "(and create the virtual environment with --system-site-packages), or use --camera N for a USB camera"
)


class Picamera2Source:
    """CSI camera ``target`` (0, 1, ...) configured for BGR frames of the requested size and rate.

    libcamera's ``RGB888`` format is stored B, G, R in memory, which is OpenCV's BGR order.
    """

    live = True

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        try:
            self.camera_num = int(spec.target)
        except ValueError as exc:
            raise SourceError(f"picamera2 camera must be a number (0, 1, ...), got {spec.target!r}: use --picamera --camera N") from exc
        self.name = spec.describe()
        self.size = (spec.width or DEFAULT_SIZE[0], spec.height or DEFAULT_SIZE[1])
        self.fps: float | None = spec.fps
        self.lores = lores_size(self.size, spec.reduce_to) if spec.reduce_to else None  # (w, h) read instead of main
        self._camera: Any = None

    def open(self) -> None:
        self.close()
        try:
            picamera2 = importlib.import_module("picamera2")  # lazily: it exists only on a Raspberry Pi
        except ImportError as exc:
            raise SourceError(INSTALL_HINT) from exc
        camera: Any = None
        try:
            camera = picamera2.Picamera2(self.camera_num)
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            streams: dict[str, Any] = {"main": {"size": self.size, "format": "RGB888"}}
            if self.lores is not None:
                streams["lores"] = {"size": self.lores, "format": "YUV420"}  # the only lores format the Pi 4 ISP offers
            config = camera.create_video_configuration(**streams, controls=controls)
            camera.configure(config)
            camera.start()
        except Exception as exc:
            if camera is not None:
                _quietly_close(camera)
            raise SourceError(
                f"CSI camera {self.camera_num} could not be opened ({type(exc).__name__}: {exc}): check the ribbon cable, "
                "that no other program uses the camera, and `rpicam-hello --list-cameras`"
            ) from exc
        self._camera = camera
        log.info("CSI camera %d started at %dx%d%s%s", self.camera_num, *self.size, f", {self.fps:g} fps" if self.fps else "",
                 f"; the model reads the ISP-scaled lores stream at {self.lores[0]}x{self.lores[1]}" if self.lores else "")

    def read(self) -> np.ndarray | None:
        camera = self._camera
        if camera is None:
            return None
        try:
            image = np.asarray(camera.capture_array("lores" if self.lores else "main"))
        except Exception as exc:
            log.warning("CSI camera %d: capture failed: %s", self.camera_num, exc)
            return None
        if self.lores is not None:  # planar YUV420: (h * 3 / 2, w), Y then U then V
            w, h = self.lores
            return cv2.cvtColor(np.ascontiguousarray(image[: h * 3 // 2, :w]), cv2.COLOR_YUV2BGR_I420)
        if image.ndim == 3 and image.shape[2] == 4:  # XBGR8888 buffers carry a padding byte
            image = image[:, :, :3]
        return np.ascontiguousarray(image, dtype=np.uint8)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            _quietly_close(camera)


def _quietly_close(camera: Any) -> None:
    for method in ("stop", "close"):
        try:
            getattr(camera, method)()
        except Exception as exc:
            log.debug("picamera2 %s failed: %s", method, exc)
