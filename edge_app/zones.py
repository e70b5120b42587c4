"""Zones of the frame and debounced states.

A zone (``--zone door:0.6,0.1,0.3,0.5``, or pixels ``--zone door:380,40,200,260``) is a rectangle
``X,Y,W,H`` classified on its own instead of the centre crop: "is the garage door open". Fractions (all four
numbers at most 1) scale with the frame; pixels must lie inside it: a pixel zone that does not fit the frame is
an error naming the zone and the frame size (``check_zones``, at the first frame of each size), never silently the
whole frame.

A :class:`Debouncer` turns per-frame top labels into a state that changes only after ``n`` consecutive results
agree on a label above the threshold (``--debounce N``), and says how long the state has held (dwell).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from edge_app.config.values import check_zone_names, zone_parts
from edge_app.errors import ConfigError

if TYPE_CHECKING:
    from edge_app.model import Classification

WHOLE_FRAME = "frame"  # the state's name when there are no zones


@dataclass(frozen=True)
class Zone:
    name: str
    x: float
    y: float
    w: float
    h: float
    fractional: bool

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels of a ``height`` x ``width`` frame, clipped to it."""
        sx, sy = (width, height) if self.fractional else (1, 1)
        x0, y0 = round(self.x * sx), round(self.y * sy)
        x1, y1 = round((self.x + self.w) * sx), round((self.y + self.h) * sy)
        x0, x1 = max(0, min(width, x0)), max(0, min(width, x1))
        y0, y1 = max(0, min(height, y0)), max(0, min(height, y1))
        return x0, y0, x1, y1

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The zone's pixels (a view); the whole frame when the zone lies outside it (logged by the caller once)."""
        x0, y0, x1, y1 = self.box(*frame.shape[:2])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return frame
        return frame[y0:y1, x0:x1]

    def fits(self, height: int, width: int) -> bool:
        """Whether the zone lies inside a ``height`` x ``width`` frame and covers at least 2x2 pixels of it."""
        if not self.fractional and (self.x + self.w > width or self.y + self.h > height):
            return False
        x0, y0, x1, y1 = self.box(height, width)
        return x1 - x0 >= 2 and y1 - y0 >= 2

    def describe(self) -> str:
        nums = ",".join(f"{v:g}" for v in (self.x, self.y, self.w, self.h))
        return f"{self.name}:{nums}{'' if self.fractional else ' px'}"


def parse_zone(text: str) -> Zone:
    """``NAME:X,Y,W,H`` -> :class:`Zone`; a ConfigError that shows the expected form otherwise (``edge_app.config.values``)."""
    return Zone(*zone_parts(text))


def check_zones(zones: list[Zone] | tuple[Zone, ...], height: int, width: int, source: str) -> None:
    """A ConfigError naming every zone that does not fit a ``width`` x ``height`` frame of ``source``."""
    bad = [z for z in zones if not z.fits(height, width)]
    if bad:
        names = ", ".join(f"zone {z.describe()}" for z in bad)
        raise ConfigError(f"{names} does not fit the {width}x{height} frame of {source}: pixel zones need X+W <= {width} and "
                          f"Y+H <= {height}; fix --zone, or give it in fractions of the frame (all four numbers at most 1)")


def parse_zones(texts: tuple[str, ...] | list[str]) -> list[Zone]:
    """Every zone, and a ConfigError when a name is used twice."""
    return [Zone(*parts) for parts in check_zone_names(texts)]


@dataclass
class Debouncer:
    """A state that changes only after ``n`` consecutive frames agree on a top label (``None``: nothing above the threshold)."""

    n: int = 1
    state: str | None = None
    since: float | None = None  # time.time() the state was entered
    _candidate: str | None = field(default=None, repr=False)
    _count: int = field(default=0, repr=False)

    def update(self, label: str | None, now: float) -> bool:
        """Fold in one frame's top label; True when the state changed on this frame."""
        if label is not None and label == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = label, 1 if label is not None else 0
        if label is not None and label != self.state and self._count >= self.n:
            self.state, self.since = label, now
            return True
        return False

    def dwell(self, now: float) -> float | None:
        return None if self.since is None else max(0.0, now - self.since)

    def reset(self) -> None:
        """A new model: its labels may differ, so the state starts afresh."""
        self.state = self.since = self._candidate = None
        self._count = 0


class ZoneResult(NamedTuple):
    """One zone's (or, without zones, the whole frame's) classification and debounced state on one frame."""

    name: str
    top: list[Classification]
    state: str | None
    dwell_s: float | None
    state_changed: bool
    box: tuple[int, int, int, int] | None  # pixels of the frame it was cut from; None for the whole frame

    def to_json_dict(self) -> dict[str, object]:
        return {
            "top": [{"id": int(c.id), "label": str(c.label), "score": round(float(c.score), 4)} for c in self.top],
            "state": self.state,
            "dwell_s": None if self.dwell_s is None else round(self.dwell_s, 2),
            "state_changed": self.state_changed,
        }
