"""The frame loop: round-robin over the channels -> classify -> fan out; the stats lines.

Per frame it records how long each stage took (``latency_ms``): ``capture`` (waiting for the frame), ``preprocess`` (on
the capture thread, overlapping the previous frame's inference, or on the frame loop when that keeps the slower thread
faster: ``edge_app.balance``), ``invoke`` (set input, run, read scores), ``draw`` (the display, snapshot, web and MQTT
outputs; left out when there are none) and ``total`` (all of these for the frame: the loop's time plus the capture
thread's preprocessing). Logs are written last, so they hold the final numbers; the display shows the previous frame's
draw time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edge_app.balance import StageBalancer
from edge_app.notify import Notifier
from edge_app.outputs import FrameResult
from edge_app.pipeline import LOGGER
from edge_app.pipeline.channel import Channel
from edge_app.pipeline.fanout import Output, fan_out
from edge_app.pipeline.modelslot import ModelSlot, Swap
from edge_app.pipeline.status import STATUS_EVERY_S, StatusBoard
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.sources import CaptureStats, Frame

log = logging.getLogger(LOGGER)

POLL_S = 0.2  # longest wait for a frame: how quickly a stop request or a dead source is noticed
PAUSE_POLL_MS = 50


class Window(Protocol):
    """What the loop needs from an on-screen view (``DisplaySink``): a sink with keys for pause and quit."""

    paused: bool
    quit_requested: bool

    def write(self, frame: np.ndarray, result: FrameResult) -> None: ...

    def poll(self, delay_ms: int = 1) -> None: ...

    def close(self) -> None: ...


class FrameLoop:
    """Classifies frames from ``channels`` until ``stop`` is set, a limit is reached, every source has ended or the window quits.

    ``views`` are the outputs every source shares (MQTT, extra sinks), drawn before the result is final; ``ready`` is set by
    any grabber with a frame (several sources); ``request_stop(reason)`` ends the run; ``after_swap`` hears of a new model.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        slot: ModelSlot,
        zones: ZoneClassifier,
        board: StatusBoard,
        *,
        balancer: StageBalancer,
        notifier: Notifier,
        stop: threading.Event,
        request_stop: Callable[[str], None],
        ready: threading.Event | None = None,
        views: list[Output] | None = None,
        display: Window | None = None,
        max_frames: int | None = None,
        duration: float | None = None,
        stats_interval: float = 0.0,
        after_swap: Callable[[Swap], None] | None = None,
    ) -> None:
        self.channels = list(channels)
        self.several = len(self.channels) > 1
        self.slot = slot
        self.zones = zones
        self.board = board
        self.balancer = balancer
        self.notifier = notifier
        self.stop = stop
        self.request_stop = request_stop
        self.ready = ready if ready is not None else threading.Event()
        self.views = views if views is not None else []
        self.display = display
        self.max_frames = max_frames
        self.duration = duration
        self.stats_interval = stats_interval
        self.after_swap = after_swap
        self._turn = 0  # several sources: the channel the next round starts with (round-robin)

    def outputs(self) -> list[Output]:
        return self.views + [o for ch in self.channels for o in ch.outputs()]

    def run(self) -> None:
        board = self.board
        started = time.monotonic()
        next_stats = started + self.stats_interval if self.stats_interval > 0 else float("inf")
        next_status = started + STATUS_EVERY_S
        frames_at_stats = 0
        while not self.stop.is_set():
            self.notifier.watchdog()
            self.slot.poll(self._swapped)
            now = time.monotonic()
            if self.duration is not None and now - started >= self.duration:
                self.request_stop(f"duration {self.duration:g} s reached")
                break
            if now >= next_stats:
                self.log_stats(board.frames - frames_at_stats, self.stats_interval)
                frames_at_stats = board.frames
                next_stats = now + self.stats_interval
            if now >= next_status:
                self.notifier.status(board.line())
                next_status = now + STATUS_EVERY_S
            display = self.display
            if display is not None:
                if display.quit_requested:
                    self.request_stop("quit from the display")
                    break
                if display.paused:
                    display.poll(PAUSE_POLL_MS)
                    continue
            t0 = time.perf_counter()
            cpu0 = time.thread_time()
            got = self.next_frame()
            if got is None:
                grabbers = [ch.grabber for ch in self.channels if ch.grabber is not None]
                if all(g.ended for g in grabbers):
                    self.request_stop("end of source" if len(grabbers) == 1 else "end of every source")
                    break
                if any(not g.stats.connected and not g.ended for g in grabbers) and board.state != "waiting":
                    board.state = "waiting"
                    self.notifier.status(board.line())
                if display is not None:
                    display.poll(1)
                continue
            if board.state != "running":
                board.state = "running"
                self.notifier.status(board.line())
            prepare_ms = self.process(*got, t0)
            if self.balancer.observe(got[1].capture_cpu_ms, (time.thread_time() - cpu0) * 1e3, prepare_ms):
                self.place_preparing()
            if self.max_frames is not None and board.frames >= self.max_frames:
                self.request_stop(f"max_frames {self.max_frames} reached")

    def next_frame(self) -> tuple[Channel, Frame] | None:
        """The next frame to classify: the only source's, or, with several, the next source in turn that has one (round-robin)."""
        if not self.several:
            ch = self.channels[0]
            assert ch.grabber is not None
            frame = ch.grabber.get(timeout=POLL_S)
            return (ch, frame) if frame is not None else None
        deadline = time.monotonic() + POLL_S
        while True:
            self.ready.clear()  # before polling: a frame that arrives meanwhile sets it again
            n = len(self.channels)
            for k in range(n):
                ch = self.channels[(self._turn + k) % n]
                assert ch.grabber is not None
                frame = ch.grabber.get(timeout=0)
                if frame is not None:
                    self._turn = (self._turn + k + 1) % n
                    return ch, frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop.is_set() or not self.ready.wait(remaining):
                return None

    def prepare(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The capture threads' preparation, or None while the frame loop prepares (the balancer's placement)."""
        assert self.slot.classifier is not None
        return self.zones.prepare_for(self.slot.classifier) if self.balancer.on_capture else None

    def place_preparing(self) -> None:
        """Hand the capture thread the preparation, or take it away, as the balancer has just decided."""
        prepare = self.prepare()
        for ch in self.channels:
            if ch.grabber is not None:
                ch.grabber.set_prepare(prepare)

    def _swapped(self, swap: Swap) -> None:
        """A new model between two frames: fresh scores (and states, for other labels), its preparation, the balancer anew."""
        classifier = swap.new
        for ch in self.channels:
            ch.zones.reset_scores()
            if not swap.same_labels:  # a state named by the old labels means nothing now
                ch.zones.reset_states()
            ch.last_label = None
            if ch.grabber is not None:
                ch.grabber.set_prepare(self.zones.prepare_for(classifier) if self.balancer.on_capture else None)
                need, cover = ch.grabber.spec.reduce_to, ch.grabber.spec.reduce_cover
                if need is not None and (classifier.size[0] > need[0] or classifier.size[1] > need[1] or classifier.decode_cover > cover):
                    log.warning("the new model takes %dx%d, or a larger decode for its measured agreement (decode.cover), than the reduced decode gives: "
                                "restart edge-app to decode at a larger scale", *classifier.size)
        self.balancer.reset()  # the new model's invoke() costs differently
        if self.after_swap is not None:
            self.after_swap(swap)

    def process(self, ch: Channel, frame: Frame, t0: float) -> float:
        """Classify one frame and hand the result to every output; returns how long preparing its input took (on either thread), in ms."""
        classifier = self.slot.classifier
        grabber = ch.grabber
        assert classifier is not None and grabber is not None
        self.zones.check(ch.zones, frame, ch.spec)
        t1 = time.perf_counter()
        ch.new_capture()
        image = frame.input
        if image is None:  # the capture thread did not prepare it
            image = self.zones.prepare_for(classifier)(frame.image)
        t2 = time.perf_counter()
        elsewhere_ms = frame.prepare_ms  # work done for this frame on the capture thread (0 when it did none)
        prepare_ms = elsewhere_ms if frame.input is not None else (t2 - t1) * 1e3
        now = time.time()
        smoothed, top, states = self.zones.classify(ch.zones, classifier, image, frame, now=now, source=ch.name)
        t3 = time.perf_counter()
        label = top[0].label if top else None
        t4 = time.perf_counter()
        fps = ch.tick(t4)
        self.board.tick(t4)
        views = self.views + ch.views
        drawn = bool(views)
        latency = {
            "capture": (t1 - t0) * 1e3,
            "preprocess": prepare_ms,
            "invoke": (t3 - t2) * 1e3,
        }
        if drawn:
            latency["draw"] = ch.last_draw_ms  # provisional for the display; replaced below
        latency["total"] = (t4 - t0) * 1e3 + elsewhere_ms + ch.last_draw_ms  # 0 while nothing draws
        result = FrameResult(
            frame.index, now, top, latency, fps, label != ch.last_label, smoothed, grabber.name, frame.file, self.slot.model_id,
            states or None, bool(self.zones.zones), frame.clock,
        )
        fan_out(ch.views + self.views, frame.image, result, frame.packet)
        t5 = time.perf_counter()
        if drawn:
            ch.last_draw_ms = (t5 - t4) * 1e3
            latency["draw"] = ch.last_draw_ms
            latency["total"] = (t5 - t0) * 1e3 + elsewhere_ms
        fan_out(ch.records, frame.image, result)
        ch.last_label = label
        ch.last_result = result
        ch.frames += 1
        ch.fps = fps if fps is not None else 0.0
        self.slot.last_image = frame.image
        self.board.record(result, latency["invoke"])
        return prepare_ms

    def log_stats(self, frames: int, interval: float) -> None:
        """One stats line per source: its rate over the interval, inference time, totals, and the outputs' errors."""
        errors = sum(o.errors for o in self.outputs())
        for ch in self.channels:
            stats = ch.grabber.stats if ch.grabber else CaptureStats()
            log.info(
                "stats%s: %.1f fps (%d frames in %.1f s), inference %.1f ms, %d frames total, dropped %d, reconnects %d%s%s",
                f" {ch.name}" if self.several else "",
                (ch.fps if self.several else self.board.fps) if frames else 0.0,
                ch.frames - ch.frames_at_stats if self.several else frames,
                interval,
                self.board.inference_ms,
                ch.frames,
                stats.dropped,
                stats.reconnects,
                f", output errors {errors}" if errors else "",
                "" if stats.connected or not ch.grabber or not ch.grabber.live else f", source away: {stats.last_error}",
            )
            ch.frames_at_stats = ch.frames
