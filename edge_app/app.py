"""The recognition run: ``FrameGrabber`` -> ``Classifier`` -> ``ScoreSmoother`` -> top-k -> ``FrameResult`` -> sinks.

``App(config).run()`` loads the model, opens the source and then the outputs (a source that cannot
be opened leaves no empty log behind), tells systemd it is ready, and classifies frames until the
source ends (files, folders), a limit is reached, the display is quit, or SIGTERM/SIGINT arrives
(also while a slow stream is still opening); then it releases the camera, closes the outputs and
returns 0. SIGHUP (``systemctl reload edge-app``) reloads the model: a thread of its own opens the
new bundle and classifies the newest frame with it while the old model goes on classifying, and the
frame loop swaps it in between two frames; a bundle that fails to load or to classify is refused
with one log line and the old one keeps running.

``App`` builds the parts in ``edge_app.pipeline`` (channels, the model slot, zone classification, the
status board, the outputs, the frame loop), starts and stops them, and handles signals and the shutdown
order. Per-frame latencies (``latency_ms``) are described in ``edge_app.pipeline.loop``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from edge_app.balance import StageBalancer
from edge_app.config import AppConfig
from edge_app.delegates import Acceleration, DelegateLoader
from edge_app.deploy import ModelDesk
from edge_app.model import Classifier, ModelFiles, Threshold
from edge_app.mqtt import MqttSink
from edge_app.notify import Notifier
from edge_app.ota import BundlePoller
from edge_app.outputs import FrameResult, Sink
from edge_app.pipeline.build import RunOutputs
from edge_app.pipeline.channel import Channel, decode_reduced, full_frame_keepers, per_source_path, reduced_spec
from edge_app.pipeline.fanout import Output, errors_by_name
from edge_app.pipeline.loop import POLL_S, FrameLoop, Window
from edge_app.pipeline.modelslot import ModelSlot, OpenModel, Swap, bundle_name, open_model
from edge_app.pipeline.status import StatusBoard
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.sources import FrameGrabber
from edge_app.web import WebServer
from edge_app.zones import parse_zones

__all__ = ["POLL_S", "App", "Window", "bundle_name", "per_source_path"]

log = logging.getLogger(__name__)


class App:
    """One run of the recognition loop for ``config``; ``run()`` returns the process exit code (0)."""

    def __init__(
        self,
        config: AppConfig,
        *,
        notifier: Notifier | None = None,
        loader: DelegateLoader | None = None,
        extra_sinks: Sequence[Sink] = (),
        window: Window | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier()
        self.loader = loader
        self.extra_sinks = list(extra_sinks)
        self.handle_signals = handle_signals
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()  # several sources: any of them has a frame
        self._signals = 0
        specs = config.source_specs()
        self.several = len(specs) > 1
        cls = config.classification
        self.zones = ZoneClassifier(parse_zones(cls.zones), smoothing=cls.smoothing, debounce=cls.debounce, k=cls.top_k, threshold=cls.threshold,
                                    several=self.several)
        self.channels = [Channel(name, spec, self.zones.new_state()) for name, spec in specs]
        # one source: the capture thread or the frame loop prepares the inputs, whichever keeps the slower stage faster (measured);
        # several sources share the frame loop, so their capture threads prepare (prepare = "capture" or "loop" fixes it)
        self.balancer = StageBalancer(adaptive=config.model.prepare == "auto" and not self.several, on_capture=config.model.prepare != "loop")
        self.slot = ModelSlot(self._open_model, self._stop)
        self.board = StatusBoard(self.channels, self.slot)
        self.sinks = RunOutputs(config, window)
        self.poller: BundlePoller | None = None  # --model-url
        # the models page's back end: deploy into and roll back --model DIR, retrain from --collect DIR
        self.desk = ModelDesk(config.model.path, config.collect.dir, reload=self.reload_and_wait, running=lambda: self.model_id)
        self.loop: FrameLoop | None = None

    # ------------------------------------------------------------------ the parts' state, as callers have always read it

    @property
    def classifier(self) -> Classifier | None: return self.slot.classifier
    @property
    def files(self) -> ModelFiles | None: return self.slot.files
    @property
    def acceleration(self) -> Acceleration | None: return self.slot.acceleration
    @property
    def model_id(self) -> str | None: return self.slot.model_id
    @property
    def _last_image(self) -> np.ndarray | None: return self.slot.last_image
    @property
    def frames(self) -> int: return self.board.frames
    @property
    def fps(self) -> float: return self.board.fps
    @property
    def last_result(self) -> FrameResult | None: return self.board.last_result
    @property
    def first_result_at(self) -> float | None: return self.board.first_result_at
    @property
    def state(self) -> str: return self.board.state
    @property
    def display(self) -> Window | None: return self.sinks.display
    @property
    def web(self) -> WebServer | None: return self.sinks.web
    @property
    def mqtt(self) -> MqttSink | None: return self.sinks.mqtt

    @property
    def grabber(self) -> FrameGrabber | None:
        """The first source's capture thread (the only one, unless several sources run)."""
        return self.channels[0].grabber

    def outputs(self) -> list[Output]:
        return self.sinks.all(self.channels)

    def status(self) -> dict[str, Any]:
        """A snapshot for /status, MQTT and systemd: model, source, fps, inference_ms, frames, dropped, reconnects, uptime_s, ..."""
        display = self.sinks.display
        status = self.board.snapshot(prepared_on=self.balancer.where, paused=bool(display and display.paused), output_errors=errors_by_name(self.outputs()))
        threshold = self.threshold()
        status["threshold"] = threshold.value if threshold else None
        status["threshold_source"] = threshold.source if threshold else None
        return status

    def threshold(self) -> Threshold | None:
        """The score threshold in force with the running model and where it came from; None before the model is open."""
        classifier = self.slot.classifier
        return self.zones.threshold_for(classifier) if classifier is not None else None

    def current_fps(self) -> float:
        return self.board.current_fps()

    # ------------------------------------------------------------------ control

    def request_stop(self, reason: str) -> None:
        """Ask the loop to finish (thread- and signal-safe); it returns within about ``POLL_S``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_reload(self) -> None:
        """Ask the loop to reload the model before the next frame (thread- and signal-safe)."""
        self.slot.request_reload()

    def reload_and_wait(self, timeout: float = 30.0) -> dict[str, Any]:
        """Request a reload and wait for the loop to try it: ``{"ok", "model", "error"}`` (``pending`` when it has not yet)."""
        return self.slot.reload_and_wait(timeout)

    def _open_model(self, model: Path | None = None) -> OpenModel:
        """Open ``model`` (default: the config's, reread from disk); a reload calls it on its own thread."""
        c = self.config.model
        return open_model(model or c.path, c.labels, delegate=c.delegate, device=c.device, threads=c.threads, loader=self.loader)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            self.request_reload()
            return
        self._signals += 1
        if self._signals > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for a clean shutdown
        self.request_stop(signal.Signals(signum).name)

    def _install_signals(self) -> dict[int, Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Load, open, loop, clean up. Raises ``EdgeAppError`` subclasses for set-up failures; returns 0."""
        previous = self._install_signals()
        config = self.config
        try:
            self.slot.load(config.model.path, config.model.seed)
            if self._stop.is_set():
                return 0
            classifier = self.slot.classifier
            assert classifier is not None
            log.info("threshold %s", self.zones.threshold_for(classifier).describe())
            loop = self.loop = FrameLoop(self.channels, self.slot, self.zones, self.board, balancer=self.balancer, notifier=self.notifier, stop=self._stop,
                                         request_stop=self.request_stop, ready=self._ready, views=self.sinks.views, max_frames=config.run.max_frames,
                                         duration=config.run.duration, stats_interval=config.run.stats_interval, after_swap=self._swapped)
            reduced = decode_reduced(config.sources.decode, self.zones.zones)
            keeps = full_frame_keepers(window=not config.run.headless or self.sinks.display is not None, http=config.http.listen,
                                       snapshots=config.snapshots.dir, collect=config.collect.dir, zone=config.classification.zones)
            for ch in self.channels:
                spec = (reduced_spec(ch.spec, classifier.size, classifier.decode_cover, self.zones.zones)
                        if reduced and ch.reduced(keeps) else ch.spec)
                # preprocessing overlaps inference; with several sources, each grabber wakes the one frame loop
                ch.start(spec, loop.prepare(), self._ready if self.several else None, cancel=self._stop)  # SIGTERM ends a slow open within POLL_S
                if self._stop.is_set():
                    return 0
            self.sinks.open(self.channels, self.zones, self.slot, extra_sinks=self.extra_sinks, status=self.status,
                            reload=self.reload_and_wait, desk=self.desk)  # only now: a source that cannot be opened leaves no empty log file
            loop.display = self.sinks.display
            if config.model.url is not None and config.model.path is not None:
                self.poller = BundlePoller(config.model.url, config.model.path, poll_s=config.model.poll, reload=self.reload_and_wait, stop=self._stop)
                self.poller.start()
            self.board.state = "running"
            self.board.reached_running = True
            names = ", ".join(ch.grabber.name for ch in self.channels if ch.grabber is not None)
            self.notifier.ready(f"classifying {names}")
            log.info("running: %s -> %s", names, ", ".join(o.name for o in self.outputs()) or "no outputs")
            loop.run()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _swapped(self, swap: Swap) -> None:
        """A new model is in: MQTT announces its labels; a threshold that follows the model says its new value."""
        was = self.zones.threshold_for(swap.old) if swap.old is not None else None
        now = self.zones.threshold_for(swap.new)
        if now != was:
            log.info("threshold %s%s", now.describe(), f"; was {was.value:g}" if was is not None else "")
        if self.sinks.mqtt is not None:
            self.sinks.mqtt.update_model(swap.new.labels, bundle_name(swap.files))

    def _shutdown(self) -> None:
        """The shutdown order: reloads and their waiters, the model-url poller, the models page's jobs, the sources, the outputs
        (the web server last), systemd; then one line per source."""
        self.board.state = "stopping"
        reason = self.stop_reason or "error"
        self.notifier.stopping(f"stopping: {reason}")
        self._stop.set()
        self.slot.close()  # a reload still opening its model: let it finish, then drop it; wake a POST /api/reload waiting for one
        if self.poller is not None:
            self.poller.join()
        self.desk.close()  # a retrain-model job started from the models page ends with the app
        for ch in self.channels:
            ch.stop()
        self.sinks.close(self.channels)
        self.notifier.close()
        if self.board.reached_running:
            elapsed = time.monotonic() - self.board.created
            for ch in self.channels:
                if ch.grabber is None:
                    continue
                stats = ch.grabber.stats
                log.info("stopped (%s): %s%d frames in %.1f s, dropped %d, reconnects %d", reason, f"{ch.name}: " if self.several else "",
                         ch.frames, elapsed, stats.dropped, stats.reconnects)
        self.board.state = "stopped"

