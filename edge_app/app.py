"""The frame loop: ``FrameGrabber`` -> ``Classifier`` -> ``ScoreSmoother`` -> top-k -> ``FrameResult`` -> sinks.

``App(config).run()`` loads the model, opens the source and then the outputs (a source that cannot
be opened leaves no empty log behind), tells systemd it is ready, and classifies frames until the
source ends (files, folders), a limit is reached, the display is quit, or SIGTERM/SIGINT arrives
(also while a slow stream is still opening); then it releases the camera, closes the outputs and
returns 0. SIGHUP (``systemctl reload edge-app``) reloads the model between frames: a bundle that
fails to load or to classify the last frame is refused with one log line and the old one keeps
running.

Per frame it records how long each stage took (``latency_ms``): ``capture`` (waiting for the
frame), ``preprocess`` (done on the capture thread, overlapping the previous frame's inference),
``invoke`` (set input, run, read scores), ``draw`` (the display, snapshot, web and MQTT outputs;
left out when there are none) and ``total`` (all of these for the frame: the loop's time plus the capture thread's preprocessing). Logs are written last,
so they hold the final numbers; the display shows the previous frame's draw time.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, Protocol

import numpy as np

from edge_app import __version__
from edge_app.collect import CollectSink
from edge_app.config import AppConfig, parse_hostport
from edge_app.delegates import Acceleration, DelegateLoader, load_classifier
from edge_app.errors import EdgeAppError, OutputError
from edge_app.model import Classifier, ModelFiles, resolve_model, top_k
from edge_app.mqtt import MqttSink
from edge_app.notify import Notifier
from edge_app.ota import BundlePoller
from edge_app.outputs import FrameResult, Sink
from edge_app.outputs.display import DisplaySink
from edge_app.outputs.logsink import make_log_sink
from edge_app.outputs.snapshots import SnapshotSink
from edge_app.runtime import get_runtime
from edge_app.smoothing import ScoreSmoother
from edge_app.sources import CaptureStats, Frame, FrameGrabber
from edge_app.web import WebServer
from edge_app.zones import WHOLE_FRAME, Debouncer, Zone, ZoneResult, parse_zones

log = logging.getLogger(__name__)

POLL_S = 0.2  # longest wait for a frame: how quickly a stop request or a dead source is noticed
STATUS_EVERY_S = 5.0  # systemd STATUS= updates while running
FPS_WINDOW = 30  # frames the FPS figure is averaged over
PAUSE_POLL_MS = 50


class Window(Protocol):
    """What the loop needs from an on-screen view (``DisplaySink``): a sink with keys for pause and quit."""

    paused: bool
    quit_requested: bool

    def write(self, frame: np.ndarray, result: FrameResult) -> None: ...

    def poll(self, delay_ms: int = 1) -> None: ...

    def close(self) -> None: ...


class _Refused(Exception):
    """A reload the loop refused (the old model keeps running)."""


@dataclass
class _Output:
    """A sink with its name and error count (an output that fails is logged once, then counted)."""

    name: str
    sink: Sink
    errors: int = 0


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
        self.created = time.monotonic()
        self.started_wall = time.time()
        self.state = "starting"
        self.state_reached_running = False
        self.stop_reason: str | None = None
        self.frames = 0
        self.fps = 0.0
        self.inference_ms = 0.0
        self.last_result: FrameResult | None = None
        self.first_result_at: float | None = None  # time.monotonic() of the first classified frame
        self.zones: list[Zone] = parse_zones(config.zone)
        # one smoother and one debounced state per zone (or one for the whole frame; its state is only reported with --debounce)
        self.smoothers = [ScoreSmoother(config.smoothing) for _ in range(max(1, len(self.zones)))]
        self.debouncers = [Debouncer(config.debounce or 1) for _ in self.smoothers]
        self.reports_states = bool(self.zones) or config.debounce is not None
        self.classifier: Classifier | None = None
        self.acceleration: Acceleration | None = None
        self.files: ModelFiles | None = None
        self.model_id: str | None = None  # "cifar10@1a2b3c4d": the bundle's name and the sha256 prefix of the model it runs
        self.model_reloads = 0
        self.grabber: FrameGrabber | None = None
        self.mqtt: MqttSink | None = None
        self.poller: BundlePoller | None = None  # --model-url
        self.display: Window | None = window  # DisplaySink unless headless; given: used instead
        self.views: list[_Output] = []  # drawn and shown before the result is final
        self.records: list[_Output] = []  # logs: written last with the final latencies
        self._stop = threading.Event()
        self._reload = threading.Event()  # SIGHUP: reload the model between frames
        self._reload_cond = threading.Condition()  # POST /api/reload waits on it for the outcome
        self._reload_seq = 0
        self._reload_outcome: dict[str, Any] = {}
        self._last_image: np.ndarray | None = None  # the newest classified frame: a reloaded model's test input
        self._signals = 0
        self._done: deque[float] = deque(maxlen=FPS_WINDOW)
        self._last_label: str | None = None
        self._last_draw_ms = 0.0
        self._reconnects_seen = 0

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
        self._reload.set()

    def reload_and_wait(self, timeout: float = 30.0) -> dict[str, Any]:
        """Request a reload and wait for the loop to try it: ``{"ok", "model", "error"}`` (``pending`` when it has not yet)."""
        with self._reload_cond:
            seq = self._reload_seq
            self.request_reload()
            done = self._reload_cond.wait_for(lambda: self._reload_seq != seq or self._stop.is_set(), timeout)
            if not done or self._reload_seq == seq:
                return {"ok": False, "pending": True, "model": self.model_id, "error": "the loop has not reached the next frame yet"}
            return dict(self._reload_outcome)

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

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """A snapshot for /status, MQTT and systemd: model, source, fps, inference_ms, frames, dropped, reconnects, uptime_s, ..."""
        stats = self.grabber.stats if self.grabber is not None else CaptureStats()
        result = self.last_result
        files = self.files
        return {
            "version": __version__,
            "state": self.state,
            "model": bundle_name(files) if files else None,
            "model_id": self.model_id,
            "model_path": str(files.model) if files else None,
            "model_reloads": self.model_reloads,
            "delegate": self.acceleration.name if self.acceleration else None,
            "runtime": _runtime_name(),
            "source": self.grabber.name if self.grabber else self.config.source_spec().describe(),
            "live": bool(self.grabber.live) if self.grabber else None,
            "connected": stats.connected,
            "fps": round(self.current_fps(), 2),
            "inference_ms": round(self.inference_ms, 2),
            "frames": self.frames,
            "captured": stats.captured,
            "dropped": stats.dropped,
            "reconnects": stats.reconnects,
            "stalls": stats.stalls,
            "last_error": stats.last_error,
            "uptime_s": round(time.monotonic() - self.created, 1),
            "started": self.started_wall,
            "label": result.label if result else None,
            "score": round(result.score, 4) if result else None,
            "top": [{"label": c.label, "score": round(c.score, 4)} for c in result.top] if result else [],
            "states": {z.name: {"state": z.state, "dwell_s": None if z.dwell_s is None else round(z.dwell_s, 1)}
                       for z in (result.states or [])} if result else {},
            "paused": bool(self.display and self.display.paused),
            "output_errors": {o.name: o.errors for o in self.views + self.records if o.errors},
        }

    def current_fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames; 0 once no frame came for a second or more."""
        done = self._done
        if not done or time.perf_counter() - done[-1] > max(1.0, 2.0 / self.fps if self.fps > 0 else 1.0):
            return 0.0
        return self.fps

    def _status_line(self) -> str:
        if self.state == "waiting":
            error = self.grabber.stats.last_error if self.grabber else None
            return f"waiting for {self.grabber.name if self.grabber else 'the source'}" + (f": {error}" if error else "")
        result = self.last_result
        top = f", {result.label} {result.score:.0%}" if result and result.top else ""
        return f"{self.current_fps():.1f} fps, inference {self.inference_ms:.1f} ms, {self.frames} frames{top}"

    # ------------------------------------------------------------------ set-up

    def _load_model(self) -> None:
        self.files, self.classifier, self.acceleration, self.model_id = self._open_model()
        self._log_model("model")

    def _open_model(self) -> tuple[ModelFiles, Classifier, Acceleration, str]:
        config = self.config
        files = resolve_model(config.model, config.labels)
        classifier, acceleration = load_classifier(files, config.delegate, config.device, config.threads, self.loader)
        return files, classifier, acceleration, f"{bundle_name(files)}@{classifier.sha256[:8]}"

    def _log_model(self, what: str) -> None:
        assert self.classifier is not None and self.files is not None and self.acceleration is not None
        h, w = self.classifier.size
        log.info(
            "%s %s (%s): %dx%dx%d input, %d classes, %s on %s",
            what,
            self.files.model,
            self.model_id,
            h,
            w,
            self.classifier.channels,
            len(self.classifier.labels),
            _runtime_name(),
            self.acceleration.name,
        )

    def _reload_model(self) -> bool:
        """Swap in the model the config names (reread from disk) if it loads and classifies the newest frame; else keep the old one."""
        ok = False
        error: str | None = None
        try:
            ok = self._try_reload()
        except _Refused as exc:
            error = str(exc)
        with self._reload_cond:
            self._reload_outcome = {"ok": ok, "model": self.model_id, "error": error}
            self._reload_seq += 1
            self._reload_cond.notify_all()
        return ok

    def _try_reload(self) -> bool:
        self._reload.clear()
        old = self.model_id
        try:
            files, classifier, acceleration, new_id = self._open_model()
            if self._last_image is not None:
                scores = classifier.scores(self._last_image)
                if not np.all(np.isfinite(scores)):
                    raise EdgeAppError("it gives non-finite scores on the newest frame")
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.error("model reload refused: %s; still running %s", detail, old)
            raise _Refused(detail) from None
        same_labels = self.classifier is not None and list(self.classifier.labels) == list(classifier.labels)
        self.files, self.classifier, self.acceleration, self.model_id = files, classifier, acceleration, new_id
        for smoother in self.smoothers:
            smoother.reset()
        if not same_labels:  # a state named by the old labels means nothing now
            for debouncer in self.debouncers:
                debouncer.reset()
        self._last_label = None
        if self.grabber is not None:
            self.grabber.set_prepare(self._prepare_for(classifier))
            need = self.grabber.spec.reduce_to
            if need is not None and (classifier.size[0] > need[0] or classifier.size[1] > need[1]):
                log.warning("the new model takes %dx%d, more than the reduced decode gives: restart edge-app to decode at a larger scale", *classifier.size)
        self.model_reloads += 1
        if self.mqtt is not None:
            self.mqtt.update_model(classifier.labels, bundle_name(files))
        self._log_model(f"reloaded (was {old}):")
        return True

    def _prepare_for(self, classifier: Classifier) -> Any:
        """The capture thread's preprocessing: the centre crop, or every zone's crop stacked ``(zones, H, W, C)``."""
        if not self.zones:
            return classifier.prepare
        zones = self.zones

        def prepare(image: np.ndarray) -> np.ndarray:
            return np.stack([classifier.prepare(z.crop(image)) for z in zones])

        return prepare

    def _decode_reduced(self) -> bool:
        """Whether frames are decoded at reduced scale: ``decode = reduced`` and no configured output shows them (window, web view, snapshots)."""
        c = self.config
        if c.decode != "reduced":
            return False
        shown = [name for name, on in (("the window", not c.headless or self.display is not None), ("--http", c.http), ("--snapshots", c.snapshots),
                                       ("--zone", bool(c.zone)), ("--collect", c.collect)) if on]
        if shown:
            log.warning("decode = reduced is ignored: %s needs the full frames, so they are decoded at full size", " and ".join(shown))
            return False
        return True

    def _open_outputs(self) -> None:
        config = self.config
        if self.display is None and not config.headless:
            self.display = DisplaySink("edge-app", config.snapshots)
        if self.display is not None:
            self.views.append(_Output("display", self.display))
        if config.snapshots is not None:
            snapshots = SnapshotSink(
                config.snapshots,
                max_files=config.snapshot_max,
                min_score=config.snapshot_min_score,
                min_interval_s=config.snapshot_interval,
                annotate=True,
            )
            self.views.append(_Output(f"snapshots {config.snapshots}", snapshots))
        if config.collect is not None:
            collector = CollectSink(config.collect, interval_s=config.collect_interval, below=config.collect_below, min_gap_s=config.collect_min_gap,
                                    max_files=config.collect_max_files, max_bytes=int(config.collect_max_mb * 1e6))
            self.views.append(_Output(f"collect {config.collect}", collector))
        if config.http is not None:
            host, port = parse_hostport(config.http)
            server = WebServer(host, port, token=config.http_token, status=self.status, reload=self.reload_and_wait)
            server.start()
            self.views.append(_Output(f"web {config.http}", server))
        if config.mqtt is not None:
            mqtt = MqttSink(
                config.mqtt,
                device=config.mqtt_device,
                prefix=config.mqtt_prefix,
                every_n=config.mqtt_every,
                status=self.status,
                labels=self.classifier.labels if self.classifier else (),
                model=self.status()["model"],
                states=[z.name for z in self.zones] or ([WHOLE_FRAME] if self.reports_states else []),
            )
            self.mqtt = mqtt
            self.views.append(_Output("mqtt", mqtt))
        for i, extra in enumerate(self.extra_sinks):
            self.views.append(_Output(f"{type(extra).__name__} {i}", extra))
        if config.log is not None:
            logsink = make_log_sink(config.log, config.log_format, max_bytes=config.log_max_bytes, changes_only=config.log_changes_only)
            self.records.append(_Output(f"log {config.log}", logsink))

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Load, open, loop, clean up. Raises ``EdgeAppError`` subclasses for set-up failures; returns 0."""
        previous = self._install_signals()
        try:
            self._load_model()
            if self._stop.is_set():
                return 0
            spec = self.config.source_spec()
            assert self.classifier is not None
            if self._decode_reduced():
                spec = replace(spec, reduce_to=self.classifier.size)
            self.grabber = FrameGrabber(spec, prepare=self._prepare_for(self.classifier))  # preprocessing overlaps inference
            self.grabber.start(cancel=self._stop)  # SIGTERM ends a slow open within POLL_S
            if self._stop.is_set():
                return 0
            self._open_outputs()  # only now: a source that cannot be opened leaves no empty log file
            if self.config.model_url is not None and self.config.model is not None:
                self.poller = BundlePoller(self.config.model_url, self.config.model, poll_s=self.config.model_poll,
                                           reload=self.reload_and_wait, stop=self._stop)
                self.poller.start()
            self.state = "running"
            self.state_reached_running = True
            self.notifier.ready(f"classifying {self.grabber.name}")
            log.info("running: %s -> %s", self.grabber.name, ", ".join(o.name for o in self.views + self.records) or "no outputs")
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _loop(self) -> None:
        config = self.config
        grabber = self.grabber
        assert grabber is not None
        started = time.monotonic()
        next_stats = started + config.stats_interval if config.stats_interval > 0 else float("inf")
        next_status = started + STATUS_EVERY_S
        frames_at_stats = 0
        while not self._stop.is_set():
            self.notifier.watchdog()
            if self._reload.is_set():
                self._reload_model()
            now = time.monotonic()
            if config.duration is not None and now - started >= config.duration:
                self.request_stop(f"duration {config.duration:g} s reached")
                break
            if now >= next_stats:
                self._log_stats(self.frames - frames_at_stats, config.stats_interval)
                frames_at_stats = self.frames
                next_stats = now + config.stats_interval
            if now >= next_status:
                self.notifier.status(self._status_line())
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
            frame = grabber.get(timeout=POLL_S)
            if frame is None:
                if grabber.ended:
                    self.request_stop("end of source")
                    break
                if not grabber.stats.connected and self.state != "waiting":
                    self.state = "waiting"
                    self.notifier.status(self._status_line())
                if display is not None:
                    display.poll(1)
                continue
            if self.state != "running":
                self.state = "running"
                self.notifier.status(self._status_line())
            self._process(frame, t0)
            if config.max_frames is not None and self.frames >= config.max_frames:
                self.request_stop(f"max_frames {config.max_frames} reached")

    def _process(self, frame: Frame, t0: float) -> None:
        classifier = self.classifier
        grabber = self.grabber
        assert classifier is not None and grabber is not None
        t1 = time.perf_counter()
        reconnects = grabber.stats.reconnects
        if reconnects != self._reconnects_seen:  # a new capture: old scores say nothing about it
            self._reconnects_seen = reconnects
            for smoother in self.smoothers:
                smoother.reset()
        image = frame.input
        if image is None:  # the capture thread did not prepare it
            image = self._prepare_for(classifier)(frame.image)
        t2 = time.perf_counter()
        elsewhere_ms = frame.prepare_ms  # work done for this frame on the capture thread (0 when it did none)
        prepare_ms = elsewhere_ms if frame.input is not None else (t2 - t1) * 1e3
        inputs = image if self.zones else image[None]
        now = time.time()
        states: list[ZoneResult] = []
        for i, (smoother, debouncer) in enumerate(zip(self.smoothers, self.debouncers, strict=True)):
            zone_scores = smoother.update(classifier.invoke(inputs[i]))
            zone_top = top_k(zone_scores, classifier.labels, self.config.top_k, self.config.threshold)
            changed_state = debouncer.update(zone_top[0].label if zone_top else None, now)
            if i == 0:
                smoothed, top = zone_scores, zone_top
            if self.reports_states:
                zone = self.zones[i] if self.zones else None
                box = zone.box(*frame.image.shape[:2]) if zone else None
                states.append(ZoneResult(zone.name if zone else WHOLE_FRAME, zone_top, debouncer.state, debouncer.dwell(now), changed_state, box))
        t3 = time.perf_counter()
        label = top[0].label if top else None
        t4 = time.perf_counter()
        self._done.append(t4)
        fps = (len(self._done) - 1) / (self._done[-1] - self._done[0]) if len(self._done) > 1 else None
        drawn = bool(self.views)
        latency = {
            "capture": (t1 - t0) * 1e3,
            "preprocess": prepare_ms,
            "invoke": (t3 - t2) * 1e3,
        }
        if drawn:
            latency["draw"] = self._last_draw_ms  # provisional for the display; replaced below
        latency["total"] = (t4 - t0) * 1e3 + elsewhere_ms + self._last_draw_ms  # 0 while nothing draws
        result = FrameResult(
            frame.index, now, top, latency, fps, label != self._last_label, smoothed, grabber.name, frame.file, self.model_id,
            states or None, bool(self.zones),
        )
        self._write(self.views, frame.image, result)
        t5 = time.perf_counter()
        if drawn:
            self._last_draw_ms = (t5 - t4) * 1e3
            latency["draw"] = self._last_draw_ms
            latency["total"] = (t5 - t0) * 1e3 + elsewhere_ms
        self._write(self.records, frame.image, result)
        self._last_label = label
        self._last_image = frame.image
        self.last_result = result
        self.frames += 1
        self.fps = fps if fps is not None else 0.0
        invoke_ms = latency["invoke"]
        self.inference_ms = invoke_ms if self.frames == 1 else 0.9 * self.inference_ms + 0.1 * invoke_ms
        if self.first_result_at is None:
            self.first_result_at = time.monotonic()

    def _write(self, outputs: list[_Output], image: np.ndarray, result: FrameResult) -> None:
        for out in outputs:
            try:
                out.sink.write(image, result)
            except OutputError as exc:
                out.errors += 1
                if out.errors == 1:
                    log.error("%s failed: %s; continuing (further failures of this output are only counted)", out.name, exc)
            except Exception:
                out.errors += 1
                if out.errors == 1:
                    log.exception("%s failed unexpectedly; continuing (further failures of this output are only counted)", out.name)

    def _log_stats(self, frames: int, interval: float) -> None:
        stats = self.grabber.stats if self.grabber else CaptureStats()
        errors = sum(o.errors for o in self.views + self.records)
        log.info(
            "stats: %.1f fps (%d frames in %.1f s), inference %.1f ms, %d frames total, dropped %d, reconnects %d%s%s",
            self.fps if frames else 0.0,
            frames,
            interval,
            self.inference_ms,
            self.frames,
            stats.dropped,
            stats.reconnects,
            f", output errors {errors}" if errors else "",
            "" if stats.connected or not self.grabber or not self.grabber.live else f", source away: {stats.last_error}",
        )

    def _shutdown(self) -> None:
        self.state = "stopping"
        reason = self.stop_reason or "error"
        self.notifier.stopping(f"stopping: {reason}")
        self._stop.set()
        with self._reload_cond:  # a POST /api/reload or the model-url poller waiting for a reload: it will not come
            self._reload_cond.notify_all()
        if self.poller is not None:
            self.poller.join()
        grabber = self.grabber
        if grabber is not None:
            grabber.stop()
        for out in self.views + self.records:
            try:
                out.sink.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", out.name, exc)
        self.notifier.close()
        if grabber is not None and self.state_reached_running:
            stats = grabber.stats
            elapsed = time.monotonic() - self.created
            log.info(
                "stopped (%s): %d frames in %.1f s, dropped %d, reconnects %d",
                reason,
                self.frames,
                elapsed,
                stats.dropped,
                stats.reconnects,
            )
        self.state = "stopped"


def bundle_name(files: ModelFiles) -> str:
    """``cifar10`` for ``models/cifar10/model.tflite``; the file name for any other model file."""
    return files.model.parent.name if files.model.name == "model.tflite" else files.model.name


def _runtime_name() -> str:
    try:
        rt = get_runtime()
    except Exception:
        return "none"
    return f"{rt.name} {rt.version}"

