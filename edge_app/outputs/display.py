"""``DisplaySink``: the annotated frame in an OpenCV window, with keys.

It repaints at most 50 times a second (``MIN_REPAINT_S``); with ``--decode reduced`` it is handed the compressed
frames and decodes at full size only the ones it repaints, while the model gets its small decode of every frame.

Keys: ``q`` or Esc quits (``quit_requested``), ``s`` saves the shown image as a PNG in
``snapshot_dir``, space pauses and resumes (``paused``: the window keeps the frozen frame with a
banner and new frames are not shown). Closing the window also quits. Without GUI support in
OpenCV or without a display, opening the sink fails with a one-line ``OutputError``.

A ``$DISPLAY`` that is set but unusable (no X server there, not authorised, a stale ``ssh -X``
forward) would make OpenCV's Qt abort the whole process (exit 134) inside ``namedWindow``; the display
is therefore first connected to with libxcb, exactly as Qt connects, and a failure is the same
one-line error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import OutputError
from edge_app.outputs import FrameResult
from edge_app.outputs.draw import draw_banner, draw_overlay

log = logging.getLogger(__name__)

KEY_ESC = 27
KEY_SPACE = 32
MIN_REPAINT_S = 0.02  # at most 50 repaints a second: every frame of a 30 fps camera, every other one of a faster source
HEADLESS_HINT = "install opencv-python or python3-opencv, or run with --headless"


def opencv_gui_backend() -> str | None:
    """The GUI backend OpenCV was built with (``GTK3``, ``QT5``, ``WIN32UI``, ``COCOA``...), or None."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            value = value.strip()
            return None if not value or value.upper() == "NONE" else value
    return "unknown"  # older builds do not print a GUI line: let namedWindow decide


XCB_ERRORS = {
    1: "no X server answers there, or it refused the connection (not authorised: check xauth / XAUTHORITY)",
    2: "the X server lacks a required extension",
    3: "out of memory while connecting",
    5: "the display name cannot be parsed",
    6: "the X server has no such screen",
}


def x_display_error(display: str) -> str | None:
    """Why the X display ``display`` cannot be used, or None when libxcb connects to it (as Qt's xcb plugin does)."""
    name = ctypes.util.find_library("xcb")
    if name is None:
        return "libxcb is not installed, and the window needs it (sudo apt install libxcb1)"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        return f"libxcb cannot be loaded ({exc})"
    lib.xcb_connect.restype = ctypes.c_void_p
    lib.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.xcb_connection_has_error.restype = ctypes.c_int
    lib.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    lib.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = lib.xcb_connect(display.encode(), None)  # never NULL: a failed connection carries its error
    try:
        code = int(lib.xcb_connection_has_error(conn))
    finally:
        lib.xcb_disconnect(conn)
    return None if code == 0 else XCB_ERRORS.get(code, f"libxcb error {code}")


def check_display(
    env: Mapping[str, str] | None = None, platform: str | None = None, probe: Callable[[str], str | None] = x_display_error, backend: str | None = None
) -> None:
    """Raise ``OutputError`` when a Linux/BSD session has no usable X11 or Wayland display to open a window on."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(("linux", "freebsd", "openbsd")):
        return
    display, wayland = env.get("DISPLAY"), env.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        raise OutputError("no display to open a window on ($DISPLAY is not set); run from a desktop session or `ssh -X`, or run with --headless")
    backend = (backend if backend is not None else opencv_gui_backend() or "").upper()
    if not display or (wayland and "QT" not in backend):
        return  # GTK talks to Wayland itself; OpenCV's Qt builds have only the xcb (X11) platform
    why = probe(display)
    if why is not None:
        raise OutputError(f"cannot open a window on display {display}: {why}; start the desktop session, fix $DISPLAY, or run with --headless")


def check_gui() -> None:
    """Raise ``OutputError`` unless OpenCV can open windows here."""
    if opencv_gui_backend() is None:
        raise OutputError(f"this OpenCV ({cv2.__version__}) has no GUI support (opencv-python-headless?); {HEADLESS_HINT}")
    check_display()


class KeyControls:
    """What the display's keys do: quit, pause/resume, save a PNG snapshot of the shown image."""

    def __init__(self, snapshot_dir: Path | None = None) -> None:
        self.snapshot_dir = snapshot_dir
        self.quit_requested = False
        self.paused = False
        self.snapshots: list[Path] = []

    def handle(self, key: int, shown: np.ndarray | None, frame_index: int = 0) -> None:
        """Act on a ``cv2.waitKey`` code (-1: no key) given the image currently on screen."""
        if key < 0:
            return
        key &= 0xFF
        if key in (ord("q"), ord("Q"), KEY_ESC):
            self.quit_requested = True
        elif key == KEY_SPACE:
            self.paused = not self.paused
            log.info("display %s", "paused" if self.paused else "resumed")
        elif key in (ord("s"), ord("S")) and shown is not None:
            self.save_snapshot(shown, frame_index)

    def save_snapshot(self, image: np.ndarray, frame_index: int = 0) -> Path | None:
        """Write ``image`` as ``snapshot-<UTC time>-<frame>.png``; a failure is logged, never raised."""
        folder = self.snapshot_dir if self.snapshot_dir is not None else Path.cwd()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = folder / f"snapshot-{stamp}-{frame_index:06d}.png"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OSError("PNG encoding failed")
            path.write_bytes(data.tobytes())
        except OSError as exc:
            log.error("cannot save snapshot %s: %s", path, exc.strerror or exc)
            return None
        log.info("saved snapshot %s", path)
        self.snapshots.append(path)
        return path


class KeyControlled:
    """A window whose ``paused`` and ``quit_requested`` are those of its ``controls`` (what the frame loop reads)."""

    controls: KeyControls

    @property
    def quit_requested(self) -> bool:
        return self.controls.quit_requested

    @quit_requested.setter
    def quit_requested(self, value: bool) -> None:
        self.controls.quit_requested = value

    @property
    def paused(self) -> bool:
        return self.controls.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self.controls.paused = value


class DisplaySink(KeyControlled):
    """Shows ``draw_overlay`` output in an OpenCV window and reacts to keys (see the module doc)."""

    def __init__(self, window: str = "edge-app", snapshot_dir: Path | None = None, *, show_stats: bool = True,
                 min_repaint_s: float = MIN_REPAINT_S) -> None:
        check_gui()
        self.window = window
        self.show_stats = show_stats
        self.controls = KeyControls(snapshot_dir)
        self.shown: np.ndarray | None = None
        self.min_repaint_s = min_repaint_s
        self.decoded = 0  # compressed frames decoded at full size to be shown (--decode reduced)
        self._next_paint = 0.0
        self._index = 0
        self._closed = False
        try:
            cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "cv2.error"
            raise OutputError(f"cannot open a window: {msg}; {HEADLESS_HINT}") from exc

    def _due(self) -> bool:
        """Whether to repaint now: at most one repaint every ``min_repaint_s`` (a faster source's frames between are not drawn)."""
        now = time.monotonic()
        if self._closed or now < self._next_paint:
            return False
        self._next_paint = now + self.min_repaint_s
        return True

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self._due():
            self._repaint(frame, result)

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        """``--decode reduced``: the model saw a small decode; the window decodes in full only the frames it repaints."""
        if not self._due():
            return
        frame = None
        if not self.paused:
            frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
            if frame is None:
                raise OutputError(f"frame {result.index}: the camera's JPEG data does not decode; the window keeps the last good frame")
            self.decoded += 1
        self._repaint(frame, result)

    def _repaint(self, frame: np.ndarray | None, result: FrameResult) -> None:
        """Draw ``frame`` (unless paused: the frozen frame stays) and show it; keys and repaint."""
        if frame is not None and not self.paused:
            self.shown = draw_overlay(frame, result, show_stats=self.show_stats)
            self._index = result.index
        self._show()

    def poll(self, delay_ms: int = 1) -> None:
        """Keep the window responsive (keys, repaint) when no new frame is written, e.g. while paused."""
        if not self._closed:
            self._show(delay_ms)

    def _show(self, delay_ms: int = 1) -> None:
        if self.shown is not None:
            cv2.imshow(self.window, draw_banner(self.shown, "PAUSED  (space to resume)") if self.paused else self.shown)
        self.controls.handle(cv2.waitKey(max(1, delay_ms)), self.shown, self._index)
        try:
            if cv2.getWindowProperty(self.window, cv2.WND_PROP_VISIBLE) < 1:
                self.quit_requested = True  # the user closed the window
        except cv2.error:
            self.quit_requested = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            cv2.destroyWindow(self.window)
            cv2.waitKey(1)
        except cv2.error as exc:
            log.debug("closing window %s: %s", self.window, exc)
