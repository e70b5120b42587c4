"""Frame sources and the capture thread.

``spec_from_args`` -> ``SourceSpec`` -> ``FrameGrabber(spec).start()`` -> ``grabber.get(timeout)``.
Backends, one small class each, chosen from ``SOURCES``: ``OpenCVSource`` (camera index, video
file, RTSP/HTTP stream), ``Picamera2Source`` (Raspberry Pi CSI camera) and ``FolderSource``.

``sources.base`` (specs, ``Frame``, the protocol) needs no OpenCV; the backends and the grabber are
imported on first use, so ``edge-app --help`` and config checks work before OpenCV is installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_app.sources.base import Frame, Source, SourceSpec, is_stream_url, redact_url, spec_from_args

if TYPE_CHECKING:
    from edge_app.sources.folder import FolderSource
    from edge_app.sources.grabber import CaptureStats, FrameGrabber
    from edge_app.sources.opencv import OpenCVSource
    from edge_app.sources.picam import Picamera2Source
    from edge_app.sources.registry import SOURCES, make_source, open_source

_LAZY = {
    "FolderSource": "folder",
    "CaptureStats": "grabber",
    "FrameGrabber": "grabber",
    "OpenCVSource": "opencv",
    "Picamera2Source": "picam",
    "SOURCES": "registry",
    "make_source": "registry",
    "open_source": "registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "SOURCES",
    "CaptureStats",
    "FolderSource",
    "Frame",
    "FrameGrabber",
    "OpenCVSource",
    "Picamera2Source",
    "Source",
    "SourceSpec",
    "is_stream_url",
    "make_source",
    "open_source",
    "redact_url",
    "spec_from_args",
]
