"""What the frame loop hands to its outputs: one ``FrameResult`` per frame, written to every ``Sink``.

Sinks (one small class each): ``DisplaySink`` (``outputs.display``), ``JsonlLogSink``/``CsvLogSink``
(``outputs.logsink``), ``SnapshotSink`` (``outputs.snapshots``), ``WebServer`` (``edge_app.web``) and
``MqttSink`` (``edge_app.mqtt``). ``draw_overlay`` (``outputs.draw``) is the pure annotation function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from edge_app.model import Classification
    from edge_app.zones import ZoneResult

__all__ = ["FrameResult", "Sink", "iso_utc"]


def iso_utc(epoch: float) -> str:
    """``2026-11-24T04:00:00.123Z`` for a ``time.time()`` value."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FrameResult:
    index: int  # frame number
    time: float  # wall clock, time.time()
    top: list[Classification]  # smoothed top-k above the threshold, best first
    latency_ms: dict[str, float]  # "capture", "preprocess", "invoke", "draw" (only when something draws), "total"
    fps: float | None  # None until two frames have been classified (one frame has no rate)
    changed: bool  # top-1 label differs from the previous frame's
    scores: np.ndarray | None = None  # the full (smoothed) score vector, when the loop keeps it
    source: str | None = None  # what the frame came from: "video file clip.mp4", "camera 0", ...
    file: str | None = None  # the image file of a folder source, relative to the folder
    model: str | None = None  # the model bundle that classified it (changes on a reload)
    # Debounced states (--debounce, --zone): one per zone, or one for the whole frame; None when neither is set.
    # With zones, ``top`` is the first zone's.
    states: list[ZoneResult] | None = None
    zoned: bool = False  # the states are zones (else the one state is the whole frame's)
    clock: float | None = None  # the source's own time of the frame (``Frame.clock``); None: live, the wall clock

    def scene_time(self) -> float:
        """Seconds on the clock that scene intervals use: the source's own time for files and folders, else ``time.monotonic()``."""
        return self.clock if self.clock is not None else time.monotonic()

    @property
    def label(self) -> str | None:
        """The top-1 label, or ``None`` when nothing passed the threshold."""
        return self.top[0].label if self.top else None

    @property
    def score(self) -> float:
        """The top-1 score (0.0 when nothing passed the threshold)."""
        return float(self.top[0].score) if self.top else 0.0

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready record: ``time`` (ISO-8601 UTC), ``epoch``, ``frame``, ``top``, ``latency_ms``, ``fps``, ``changed``,
        and ``source``, ``file`` and ``model`` when known (``fps`` is null on the first frame)."""
        record: dict[str, Any] = {
            "time": iso_utc(self.time),
            "epoch": round(self.time, 3),
            "frame": int(self.index),
            "top": [{"id": int(c.id), "label": str(c.label), "score": round(float(c.score), 4)} for c in self.top],
            "latency_ms": {k: round(float(v), 2) for k, v in self.latency_ms.items()},
            "fps": round(float(self.fps), 2) if self.fps is not None else None,
            "changed": bool(self.changed),
        }
        for key in ("source", "file", "model"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        if self.states and self.zoned:
            record["zones"] = {z.name: z.to_json_dict() for z in self.states}
        elif self.states:
            whole = self.states[0].to_json_dict()
            record.update({k: whole[k] for k in ("state", "dwell_s", "state_changed")})
        return record


class Sink(Protocol):
    """An output of the frame loop. ``write`` must return quickly and survive recoverable faults."""

    def write(self, frame: np.ndarray, result: FrameResult) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class CompressedSink(Protocol):
    """A sink that can take the compressed JPEG frame instead (``--decode reduced``) and decode it only when it shows it."""

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None: ...
