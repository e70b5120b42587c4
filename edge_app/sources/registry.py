"""The explicit backend table: ``SOURCES[spec.kind](spec)`` builds a source, ``open_source`` also opens it."""

from __future__ import annotations

from collections.abc import Callable

from edge_app.sources.base import Source, SourceSpec
from edge_app.sources.folder import FolderSource
from edge_app.sources.opencv import OpenCVSource
from edge_app.sources.picam import Picamera2Source

SOURCES: dict[str, Callable[[SourceSpec], Source]] = {
    "opencv": OpenCVSource,
    "picamera2": Picamera2Source,
    "folder": FolderSource,
}


def make_source(spec: SourceSpec) -> Source:
    """The backend for ``spec``, not yet opened (``SourceSpec`` already rejected unknown kinds)."""
    return SOURCES[spec.kind](spec)


def open_source(spec: SourceSpec) -> Source:
    """The backend for ``spec``, opened; raises ``SourceError`` with an actionable line."""
    source = make_source(spec)
    source.open()
    return source
