"""Shared capture types: ``Frame``, the ``Source`` protocol, and ``SourceSpec`` (what to open and how).

``SourceSpec`` and ``spec_from_args`` (the CLI's ``--camera`` / ``--source`` / ``--picamera`` into a spec) live in
``edge_app.config.sources`` and are re-exported here; ``edge_app.sources.registry`` turns a spec into a backend.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from edge_app.config.sources import (
    CSI_TARGET,
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    KINDS,
    SOURCE_NAME,
    SourceSpec,
    is_stream_url,
    redact_url,
    spec_from_args,
    split_source_name,
)

__all__ = [
    "CSI_TARGET",
    "DEFAULT_OPEN_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "KINDS",
    "SOURCE_NAME",
    "Frame",
    "Source",
    "SourceSpec",
    "is_stream_url",
    "redact_url",
    "spec_from_args",
    "split_source_name",
]


class Frame(NamedTuple):
    image: np.ndarray  # BGR uint8 (H, W, 3)
    index: int  # type: ignore[assignment]  # 0-based frame number from the source (shadows tuple.index)
    timestamp: float  # time.monotonic() at capture
    input: np.ndarray | None = None  # the model input, when the capture thread prepared it (``FrameGrabber(prepare=...)``)
    prepare_ms: float = 0.0  # how long preparing ``input`` took on the capture thread
    file: str | None = None  # the image file it came from (folder sources), relative to the folder
    packet: np.ndarray | None = None  # the compressed JPEG frame, when ``image`` is a reduced decode of it (what a viewer decodes)
    scale: int = 1  # ``image`` is 1/scale of the camera's frame (reduced decoding): zone boxes are given in the camera's pixels
    capture_cpu_ms: float = 0.0  # the capture thread's CPU time for this frame (read, decode, prepare); 0 when not measured
    # The source's own time, seconds: a video file's position (frame number / its frame rate), an image folder's
    # images one second apart; None for cameras and streams, whose own time is the wall clock. Intervals that
    # describe the scene (collecting, snapshots) run on it, so a file read flat out keeps what real time would.
    clock: float | None = None


class Source(Protocol):
    """One small class per backend (``SOURCES`` in ``edge_app.sources``)."""

    name: str
    live: bool  # True: camera/stream (newest frame wins, reconnect); False: file/folder

    def open(self) -> None: ...  # raises SourceError with an actionable line

    def read(self) -> np.ndarray | None: ...  # None = end of stream (files) or a failed read (live)

    def close(self) -> None: ...
