"""Where each frame's model input is prepared: on the capture thread or on the frame loop.

The pipeline has two stages on two threads: the capture thread reads and decodes a frame, the frame
loop runs the model on it. Preparing the input (crop, resize, colour conversion, quantisation) can run
on either; a saturated pipeline (a video file processed as fast as it goes, several frames waiting)
runs at the pace of its slower stage, so preparing belongs on the lighter one. By default the capture
thread prepares (the resize overlaps the previous frame's ``invoke()``, which keeps latency lowest);
``StageBalancer`` measures both threads' CPU time a frame over a window of frames and moves preparing
to the frame loop only when that makes the slower stage at least ``margin`` faster, and back when it
no longer does. With a small model and fast reduced decoding the capture thread is the slower stage
(``edge-app bench --decode reduced`` shows the ``by thread`` split); with a larger model, ``invoke()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WINDOW_FRAMES = 240  # frames a decision is based on (a few seconds of a camera, a fraction of a second of a file)
MARGIN = 0.9  # move off the capture thread only when the slower stage gets at least 10 % faster


@dataclass(frozen=True)
class StageCosts:
    """Mean CPU milliseconds a frame: the capture thread's without preparing, the frame loop's without preparing, preparing."""

    capture_ms: float
    loop_ms: float
    prepare_ms: float

    def slower_stage_ms(self, on_capture: bool) -> float:
        """The slower stage's time a frame with preparing on the capture thread (``on_capture``) or on the frame loop."""
        if on_capture:
            return max(self.capture_ms + self.prepare_ms, self.loop_ms)
        return max(self.capture_ms, self.loop_ms + self.prepare_ms)


@dataclass
class StageBalancer:
    """Decides, every ``window`` frames, whether the capture thread (``on_capture``) or the frame loop prepares the input.

    ``observe`` takes one frame's measurements: the capture thread's CPU for it, the frame loop's CPU for
    it, and the time preparing took (on whichever thread did it). It returns True when the placement
    has just changed; the caller then hands the capture thread its preparation or takes it away.
    ``adaptive=False`` keeps the capture thread preparing (several sources share one frame loop, which
    must stay light).
    """

    adaptive: bool = True
    window: int = WINDOW_FRAMES
    margin: float = MARGIN
    on_capture: bool = True
    last: StageCosts | None = None  # the costs behind the latest decision
    _n: int = field(default=0, repr=False)
    _capture: float = field(default=0.0, repr=False)
    _loop: float = field(default=0.0, repr=False)
    _prepare: float = field(default=0.0, repr=False)

    @property
    def where(self) -> str:
        return "capture thread" if self.on_capture else "frame loop"

    def reset(self) -> None:
        """Forget the measurements (a new model costs differently); the placement stays until the next window decides."""
        self._n, self._capture, self._loop, self._prepare = 0, 0.0, 0.0, 0.0

    def observe(self, capture_cpu_ms: float, loop_cpu_ms: float, prepare_ms: float) -> bool:
        if not self.adaptive or capture_cpu_ms <= 0.0:  # 0: the source gave no capture-thread measurement
            return False
        self._n += 1
        self._capture += capture_cpu_ms
        self._loop += loop_cpu_ms
        self._prepare += prepare_ms
        if self._n < self.window:
            return False
        n = self._n
        prepare = self._prepare / n
        capture = self._capture / n - (prepare if self.on_capture else 0.0)
        loop = self._loop / n - (0.0 if self.on_capture else prepare)
        costs = StageCosts(max(capture, 0.0), max(loop, 0.0), prepare)
        self.last = costs
        self.reset()
        here, there = costs.slower_stage_ms(self.on_capture), costs.slower_stage_ms(not self.on_capture)
        # to the frame loop only for a clear gain; back to the capture thread (lower latency) as soon as it is no slower
        move = there < self.margin * here if self.on_capture else there <= here
        if not move:
            return False
        self.on_capture = not self.on_capture
        log.info(
            "the %s prepares the model inputs from now on: capture thread %.3f ms a frame, frame loop %.3f ms, preparing %.3f ms "
            "(slower stage %.3f -> %.3f ms)",
            self.where, costs.capture_ms, costs.loop_ms, costs.prepare_ms, here, there,
        )
        return True
