"""Which OpenCV this environment has, and keeping OpenCV's and FFmpeg's own console lines out of ours.

OpenCV comes from exactly one of four PyPI distributions (or from the system, ``python3-opencv``).
They all install the same ``cv2`` module, so two of them in one environment silently replace each
other: installing ``opencv-python-headless`` after ``opencv-python`` takes the window away. The
rule is one OpenCV per environment: ``[gui]`` on a desktop, ``[headless]`` on a server, neither
beside ``python3-opencv``; ``edge-app`` warns when it finds more than one, and ``require_opencv``
turns a missing ``cv2`` into one actionable line instead of a traceback.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from types import ModuleType

from edge_app.errors import RuntimeMissingError

log = logging.getLogger(__name__)

GUI_DISTRIBUTIONS = ("opencv-python", "opencv-contrib-python")
HEADLESS_DISTRIBUTIONS = ("opencv-python-headless", "opencv-contrib-python-headless")
DISTRIBUTIONS = GUI_DISTRIBUTIONS + HEADLESS_DISTRIBUTIONS
INSTALL_HINT = (
    "install exactly one: pip install 'edge-recognition[gui]' on a desktop (live window) or 'edge-recognition[headless]' on a server, "
    "or on Raspberry Pi OS: sudo apt install python3-opencv"
)
# FFmpeg's own log level as OpenCV reads it from the environment when its FFmpeg backend starts
# (AV_LOG_QUIET = -8, AV_LOG_ERROR = 16); OpenCV's log level likewise (SILENT ... VERBOSE).
FFMPEG_QUIET = "-8"


def opencv_distributions() -> list[str]:
    """The OpenCV distributions pip installed here (empty for a system OpenCV or none at all)."""
    found = []
    for name in DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def conflict_message(found: list[str]) -> str | None:
    """A one-line warning when more than one OpenCV distribution shares this environment's ``cv2``, else None."""
    if len(found) < 2:
        return None
    return (
        f"{' and '.join(found)} are all installed here and share one cv2 module, so the last one installed wins and "
        f"the window may not open; keep one: pip uninstall -y {' '.join(found)}, then pip install 'edge-recognition[gui]' "
        "(desktop) or '[headless]' (server)"
    )


def quiet_native_logs(verbose: bool) -> None:
    """Unless ``verbose``, silence OpenCV's and FFmpeg's own stderr lines (our one-line errors say what they mean).

    Must run before ``cv2`` opens its first video; a value the user set in the environment is kept.
    """
    if verbose:
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")


def require_opencv() -> ModuleType:
    """``cv2``, or a one-line ``RuntimeMissingError`` naming the extras that install it."""
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError as exc:
        detail = f" ({exc})" if "No module named" not in str(exc) else ""
        raise RuntimeMissingError(f"OpenCV (the cv2 module) is not installed or does not load{detail}: {INSTALL_HINT}") from exc
    return cv2
