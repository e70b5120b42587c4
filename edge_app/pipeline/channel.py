"""One source's channel: its capture thread, zone states, own outputs, counters and FPS; the reduced-decode policy.

``decode_reduced`` and ``Channel.reduced`` decide whether a source's frames are decoded at reduced scale
(``decode = reduced``): not with pixel zones (they need every full frame), and not for a picamera2 whose main stream
the outputs that keep frames need.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.outputs import FrameResult
from edge_app.pipeline import LOGGER
from edge_app.pipeline.fanout import Output
from edge_app.pipeline.zoneclassify import ZoneState
from edge_app.sources import CaptureStats, FrameGrabber, SourceSpec
from edge_app.zones import Zone

log = logging.getLogger(LOGGER)

FPS_WINDOW = 30  # frames the FPS figure is averaged over


def recent_fps(done: deque[float], fps: float) -> float:
    """``fps`` while frames still come: 0 once none came for a second or more (or two frame intervals, when slower)."""
    if not done or time.perf_counter() - done[-1] > max(1.0, 2.0 / fps if fps > 0 else 1.0):
        return 0.0
    return fps


def per_source_path(path: Path, name: str) -> Path:
    """``results.jsonl`` -> ``results-door.jsonl``: each source of several gets its own log file or snapshot folder."""
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


@dataclass
class Channel:
    """One source of the app: its capture thread, smoothers and states, its own outputs and counters."""

    name: str
    spec: SourceSpec
    zones: ZoneState  # one smoother and one debounced state per zone (or one for the whole frame)
    grabber: FrameGrabber | None = None
    views: list[Output] = field(default_factory=list)  # its window, snapshots and collect folder (drawn before the result is final)
    records: list[Output] = field(default_factory=list)  # its log, written last with the final latencies
    frames: int = 0
    fps: float = 0.0
    done: deque[float] = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last_label: str | None = None
    last_result: FrameResult | None = None
    last_draw_ms: float = 0.0
    reconnects_seen: int = 0
    frames_at_stats: int = 0  # its frame count at the last stats line

    def start(self, spec: SourceSpec, prepare: Callable[[np.ndarray], np.ndarray] | None, notify: threading.Event | None,
              cancel: threading.Event) -> None:
        """Open the source (``SourceError`` if it cannot be opened) and start its capture thread; ``cancel`` ends a slow open."""
        self.grabber = FrameGrabber(spec, prepare=prepare, notify=notify)
        self.grabber.start(cancel=cancel)

    def stop(self) -> None:
        if self.grabber is not None:
            self.grabber.stop()

    def outputs(self) -> list[Output]:
        return self.views + self.records

    def new_capture(self) -> bool:
        """True (and the smoothed scores forgotten) when the source has reconnected since the last frame."""
        assert self.grabber is not None
        reconnects = self.grabber.reconnects
        if reconnects == self.reconnects_seen:
            return False
        self.reconnects_seen = reconnects
        self.zones.reset_scores()
        return True

    def tick(self, t: float) -> float | None:
        """A frame classified at ``t`` (``perf_counter``): the frames per second over the last ``FPS_WINDOW``; None for the first."""
        done = self.done
        done.append(t)
        return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 else None

    def current_fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames; 0 once no frame came for a second or more."""
        return recent_fps(self.done, self.fps)

    def reduced(self, keeps: Sequence[str]) -> bool:
        """A source decodes at reduced scale unless outputs keep frames (``keeps``) and it has no compressed frames to give them:
        picamera2's lores stream is a second, small image, so the web view, snapshots or collecting need its main stream (and
        zones, whose boxes are in the main stream's pixels)."""
        if keeps and self.spec.kind == "picamera2":
            log.warning("%s: decode = reduced is ignored: %s needs its full frames and picamera2's lores stream has no full-size "
                        "frame behind it, so the main stream feeds the model", self.name, " and ".join(keeps))
            return False
        return True

    def status(self) -> dict[str, Any]:
        stats = self.grabber.stats if self.grabber is not None else CaptureStats()
        result = self.last_result
        entry: dict[str, Any] = {
            "name": self.name,
            "source": self.grabber.name if self.grabber else self.spec.describe(),
            "live": bool(self.grabber.live) if self.grabber else None,
            "connected": stats.connected,
            "fps": round(self.current_fps(), 2),
            "frames": self.frames,
            "captured": stats.captured,
            "dropped": stats.dropped,
            "reconnects": stats.reconnects,
            "stalls": stats.stalls,
            "last_error": stats.last_error,
            "label": result.label if result else None,
            "score": round(result.score, 4) if result else None,
            "top": [{"label": c.label, "score": round(c.score, 4)} for c in result.top] if result else [],
            "states": {z.name: {"state": z.state, "dwell_s": None if z.dwell_s is None else round(z.dwell_s, 1)}
                       for z in (result.states or [])} if result else {},
        }
        return entry


def decode_reduced(decode: str, zones: Sequence[Zone]) -> bool:
    """Whether frames are decoded at reduced scale: ``decode = reduced`` and no pixel zones need every full frame
    (fractional zones scale with the frame: the reduction is chosen so each still covers the model input);
    the window, the web view, snapshots and collecting are handed the compressed frames and decode only the ones they show or keep."""
    if decode != "reduced":
        return False
    if any(not z.fractional for z in zones):
        log.warning("decode = reduced is ignored: --zone in pixels needs the full frames, so they are decoded at full size")
        return False
    return True


def full_frame_keepers(*, window: bool, http: object, snapshots: object, collect: object, zone: object) -> list[str]:
    """The outputs (and zones) that keep full frames, named as in ``Channel.reduced``'s warning."""
    return [name for name, on in (("the window", window), ("--http", http), ("--snapshots", snapshots), ("--collect", collect),
                                  ("--zone", zone)) if on]


def reduced_spec(spec: SourceSpec, size: tuple[int, int], cover: float, zones: Sequence[Zone]) -> SourceSpec:
    """``spec`` decoding at reduced scale for a model input of ``size`` (fractional zones: each must still cover the input)."""
    regions = tuple((z.h, z.w) for z in zones) or ((1.0, 1.0),)
    return replace(spec, reduce_to=size, reduce_regions=regions, reduce_cover=cover)
