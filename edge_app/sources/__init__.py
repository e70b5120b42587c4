"""Frame sources and the capture thread.

``spec_from_args`` -> ``SourceSpec`` -> ``FrameGrabber(spec).start()`` -> ``grabber.get(timeout)``.
Backends, one small class each, chosen from ``SOURCES``: ``OpenCVSource`` (camera index, video
file, RTSP/HTTP stream), ``Picamera2Source`` (Raspberry Pi CSI camera) and ``FolderSource``.
"""

from edge_app.sources.base import Frame, Source, SourceSpec, is_stream_url, redact_url, spec_from_args
from edge_app.sources.folder import FolderSource
from edge_app.sources.grabber import CaptureStats, FrameGrabber
from edge_app.sources.opencv import OpenCVSource
from edge_app.sources.picam import Picamera2Source
from edge_app.sources.registry import SOURCES, make_source, open_source

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
