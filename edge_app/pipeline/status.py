"""The status board: what the web app (/status), MQTT and systemd notify read about a run.

The frame loop records every classified frame here (``tick``, ``record``) and sets ``state``; ``snapshot()`` is the
status object, ``line()`` the one-line systemd ``STATUS=``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from edge_app import __version__
from edge_app.outputs import FrameResult
from edge_app.pipeline.channel import FPS_WINDOW, Channel, recent_fps
from edge_app.pipeline.modelslot import ModelSlot, runtime_name

STATUS_EVERY_S = 5.0  # systemd STATUS= updates while running


class StatusBoard:
    """A run's state and totals over every source (``channels``), with the model in ``slot``."""

    def __init__(self, channels: Sequence[Channel], slot: ModelSlot) -> None:
        self.channels = list(channels)
        self.slot = slot
        self.several = len(self.channels) > 1
        self.created = time.monotonic()
        self.started_wall = time.time()
        self.state = "starting"  # starting, running, waiting (a live source is away), stopping, stopped
        self.reached_running = False
        self.frames = 0  # classified frames, every source
        self.fps = 0.0  # frames a second, every source
        self.inference_ms = 0.0
        self.last_result: FrameResult | None = None  # the newest result of any source
        self.first_result_at: float | None = None  # time.monotonic() of the first classified frame
        self.done: deque[float] = deque(maxlen=FPS_WINDOW)

    def tick(self, t: float) -> None:
        """A frame classified at ``t`` (``perf_counter``), before its outputs have it."""
        self.done.append(t)

    def record(self, result: FrameResult, invoke_ms: float) -> None:
        """A frame's final result, once every output has it: the totals, the FPS over every source, the mean invoke time."""
        self.last_result = result
        self.frames += 1
        done = self.done
        self.fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        self.inference_ms = invoke_ms if self.frames == 1 else 0.9 * self.inference_ms + 0.1 * invoke_ms
        if self.first_result_at is None:
            self.first_result_at = time.monotonic()

    def current_fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames; 0 once no frame came for a second or more."""
        return recent_fps(self.done, self.fps)

    def snapshot(self, *, prepared_on: str, paused: bool, output_errors: dict[str, int]) -> dict[str, Any]:
        """A snapshot for /status, MQTT and systemd: model, source, fps, inference_ms, frames, dropped, reconnects, uptime_s, ..."""
        first = self.channels[0].status()
        slot = self.slot
        files = slot.files
        status = {
            "version": __version__,
            "state": self.state,
            "model": slot.name,
            "model_id": slot.model_id,
            "model_path": str(files.model) if files else None,
            "model_reloads": slot.reloads,
            "delegate": slot.acceleration.name if slot.acceleration else None,
            "runtime": runtime_name(),
            "prepared_on": prepared_on,  # the thread that prepares the model inputs (edge_app.balance)
            **{k: v for k, v in first.items() if k != "name"},  # the first source's (the only one, unless several run)
            "fps": round(self.current_fps(), 2),
            "inference_ms": round(self.inference_ms, 2),
            "frames": self.frames,
            "uptime_s": round(time.monotonic() - self.created, 1),
            "started": self.started_wall,
            "paused": paused,
            "output_errors": output_errors,
        }
        if self.several:  # every source with its own counters, label and states; the totals above are over all of them
            sources = [ch.status() for ch in self.channels]
            status["sources"] = sources
            for key in ("captured", "dropped", "reconnects", "stalls"):
                status[key] = sum(int(e[key]) for e in sources)
            status["connected"] = all(e["connected"] for e in sources)
            status["source"] = ", ".join(e["source"] for e in sources)
        return status

    def line(self) -> str:
        """systemd's ``STATUS=``: the rate, inference time, frames and top label; or which source is awaited."""
        if self.state == "waiting":
            away = [ch.grabber for ch in self.channels if ch.grabber is not None and not ch.grabber.stats.connected]
            grabber = away[0] if away else self.channels[0].grabber
            error = grabber.stats.last_error if grabber else None
            return f"waiting for {grabber.name if grabber else 'the source'}" + (f": {error}" if error else "")
        result = self.last_result
        top = f", {result.label} {result.score:.0%}" if result and result.top else ""
        return f"{self.current_fps():.1f} fps, inference {self.inference_ms:.1f} ms, {self.frames} frames{top}"
