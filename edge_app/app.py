"""The frame loop: ``FrameGrabber`` -> ``Classifier`` -> ``ScoreSmoother`` -> top-k -> ``FrameResult`` -> sinks.

``App(config).run()`` loads the model, opens the source and then the outputs (a source that cannot
be opened leaves no empty log behind), tells systemd it is ready, and classifies frames until the
source ends (files, folders), a limit is reached, the display is quit, or SIGTERM/SIGINT arrives
(also while a slow stream is still opening); then it releases the camera, closes the outputs and
returns 0. SIGHUP (``systemctl reload edge-app``) reloads the model: a thread of its own opens the
new bundle and classifies the newest frame with it while the old model goes on classifying, and the
frame loop swaps it in between two frames; a bundle that fails to load or to classify is refused
with one log line and the old one keeps running.

Per frame it records how long each stage took (``latency_ms``): ``capture`` (waiting for the
frame), ``preprocess`` (on the capture thread, overlapping the previous frame's inference, or on the frame loop when
that keeps the slower thread faster: ``edge_app.balance``),
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np

from edge_app import __version__, bundles
from edge_app.balance import StageBalancer
from edge_app.collect import CollectSink
from edge_app.config import AppConfig, parse_hostport
from edge_app.delegates import Acceleration, DelegateLoader, load_classifier
from edge_app.deploy import ModelDesk
from edge_app.errors import EdgeAppError, OutputError
from edge_app.model import Classifier, ModelFiles, resolve_model, top_k
from edge_app.mqtt import MqttSink
from edge_app.notify import Notifier
from edge_app.ota import BundlePoller
from edge_app.outputs import CompressedSink, FrameResult, Sink
from edge_app.outputs.display import DisplaySink
from edge_app.outputs.logsink import make_log_sink
from edge_app.outputs.snapshots import SnapshotSink
from edge_app.runtime import get_runtime
from edge_app.smoothing import ScoreSmoother
from edge_app.sources import CaptureStats, Frame, FrameGrabber, SourceSpec
from edge_app.web import WebServer
from edge_app.zones import WHOLE_FRAME, Debouncer, Zone, ZoneResult, check_zones, parse_zones

log = logging.getLogger(__name__)

POLL_S = 0.2  # longest wait for a frame: how quickly a stop request or a dead source is noticed
STATUS_EVERY_S = 5.0  # systemd STATUS= updates while running
FPS_WINDOW = 30  # frames the FPS figure is averaged over
PAUSE_POLL_MS = 50
RELOAD_JOIN_S = 30.0  # at shutdown, the longest wait for a reload still opening its model


class Window(Protocol):
    """What the loop needs from an on-screen view (``DisplaySink``): a sink with keys for pause and quit."""

    paused: bool
    quit_requested: bool

    def write(self, frame: np.ndarray, result: FrameResult) -> None: ...

    def poll(self, delay_ms: int = 1) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Loading:
    """A reload in progress: the newest frame to check the new model on, and what the loading thread made of it."""

    image: np.ndarray | None
    thread: threading.Thread = field(init=False)
    started: float = field(default_factory=time.perf_counter)
    model: tuple[ModelFiles, Classifier, Acceleration, str] | None = None
    error: str | None = None


@dataclass
class _Output:
    """A sink with its name and error count (an output that fails is logged once, then counted)."""

    name: str
    sink: Sink
    errors: int = 0
    compressed: CompressedSink | None = field(init=False)  # the sink, if it takes compressed frames: checked once, not every frame

    def __post_init__(self) -> None:
        self.compressed = self.sink if isinstance(self.sink, CompressedSink) else None


@dataclass
class _Channel:
    """One source of the app: its capture thread, smoothers and states, its own outputs and counters."""

    name: str
    spec: SourceSpec
    smoothers: list[ScoreSmoother]  # one per zone (or one for the whole frame)
    debouncers: list[Debouncer]
    grabber: FrameGrabber | None = None
    views: list[_Output] = field(default_factory=list)  # its window, snapshots and collect folder (drawn before the result is final)
    records: list[_Output] = field(default_factory=list)  # its log, written last with the final latencies
    frames: int = 0
    fps: float = 0.0
    done: deque[float] = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last_label: str | None = None
    last_result: FrameResult | None = None
    last_draw_ms: float = 0.0
    reconnects_seen: int = 0
    frames_at_stats: int = 0  # its frame count at the last stats line
    zones_checked: tuple[int, int] | None = None  # the (height, width) of camera frames its zones were found to fit

    def current_fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames; 0 once no frame came for a second or more."""
        done = self.done
        if not done or time.perf_counter() - done[-1] > max(1.0, 2.0 / self.fps if self.fps > 0 else 1.0):
            return 0.0
        return self.fps

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


def per_source_path(path: Path, name: str) -> Path:
    """``results.jsonl`` -> ``results-door.jsonl``: each source of several gets its own log file or snapshot folder."""
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


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
        self.frames = 0  # classified frames, every source
        self.fps = 0.0  # frames a second, every source
        self.inference_ms = 0.0
        self.last_result: FrameResult | None = None  # the newest result of any source
        self.first_result_at: float | None = None  # time.monotonic() of the first classified frame
        self.zones: list[Zone] = parse_zones(config.zone)
        self.reports_states = bool(self.zones) or config.debounce is not None
        # per source: one smoother and one debounced state per zone (or one for the whole frame; its state is only reported with --debounce)
        n_smoothers = max(1, len(self.zones))
        self.channels = [
            _Channel(name, spec, [ScoreSmoother(config.smoothing) for _ in range(n_smoothers)], [Debouncer(config.debounce or 1) for _ in range(n_smoothers)])
            for name, spec in config.source_specs()
        ]
        self.several = len(self.channels) > 1
        # one source: the capture thread or the frame loop prepares the inputs, whichever keeps the slower stage faster (measured);
        # several sources share the frame loop, so their capture threads prepare
        # (prepare = "capture" or "loop" fixes it)
        self.balancer = StageBalancer(adaptive=config.prepare == "auto" and not self.several, on_capture=config.prepare != "loop")
        self.classifier: Classifier | None = None
        self.acceleration: Acceleration | None = None
        self.files: ModelFiles | None = None
        self.model_id: str | None = None  # "cifar10@1a2b3c4d": the bundle's name and the sha256 prefix of the model it runs
        self.model_reloads = 0
        self.mqtt: MqttSink | None = None
        self.poller: BundlePoller | None = None  # --model-url
        # the models page's back end: deploy into and roll back --model DIR, retrain from --collect DIR
        self.desk = ModelDesk(config.model, config.collect, reload=self.reload_and_wait, running=lambda: self.model_id)
        self.display: Window | None = window  # DisplaySink unless headless; given: used instead
        self.web: WebServer | None = None  # --http: one server, a feed per source among each source's views; closed last
        self.views: list[_Output] = []  # shared by every source (MQTT, extra sinks; the web view and its status), drawn before the result is final
        self._ready = threading.Event()  # several sources: any of them has a frame
        self._turn = 0  # several sources: the channel the next round starts with (round-robin)
        self._stop = threading.Event()
        self._reload = threading.Event()  # SIGHUP: reload the model between frames
        self._reload_cond = threading.Condition()  # POST /api/reload waits on it for the outcome
        self._reload_seq = 0
        self._reload_outcome: dict[str, Any] = {}
        self._last_image: np.ndarray | None = None  # the newest classified frame: a reloaded model's test input
        self._loading: _Loading | None = None  # a reload opening the new model off the frame loop
        self._signals = 0
        self._done: deque[float] = deque(maxlen=FPS_WINDOW)

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

    @property
    def grabber(self) -> FrameGrabber | None:
        """The first source's capture thread (the only one, unless several sources run)."""
        return self.channels[0].grabber

    def outputs(self) -> list[_Output]:
        return self.views + [o for ch in self.channels for o in ch.views + ch.records]

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """A snapshot for /status, MQTT and systemd: model, source, fps, inference_ms, frames, dropped, reconnects, uptime_s, ..."""
        first = self.channels[0].status()
        files = self.files
        status = {
            "version": __version__,
            "state": self.state,
            "model": bundle_name(files) if files else None,
            "model_id": self.model_id,
            "model_path": str(files.model) if files else None,
            "model_reloads": self.model_reloads,
            "delegate": self.acceleration.name if self.acceleration else None,
            "runtime": _runtime_name(),
            "prepared_on": self.balancer.where,  # the thread that prepares the model inputs (edge_app.balance)
            **{k: v for k, v in first.items() if k != "name"},  # the first source's (the only one, unless several run)
            "fps": round(self.current_fps(), 2),
            "inference_ms": round(self.inference_ms, 2),
            "frames": self.frames,
            "uptime_s": round(time.monotonic() - self.created, 1),
            "started": self.started_wall,
            "paused": bool(self.display and self.display.paused),
            "output_errors": {o.name: o.errors for o in self.outputs() if o.errors},
        }
        if self.several:  # every source with its own counters, label and states; the totals above are over all of them
            sources = [ch.status() for ch in self.channels]
            status["sources"] = sources
            for key in ("captured", "dropped", "reconnects", "stalls"):
                status[key] = sum(int(e[key]) for e in sources)
            status["connected"] = all(e["connected"] for e in sources)
            status["source"] = ", ".join(e["source"] for e in sources)
        return status

    def current_fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames; 0 once no frame came for a second or more."""
        done = self._done
        if not done or time.perf_counter() - done[-1] > max(1.0, 2.0 / self.fps if self.fps > 0 else 1.0):
            return 0.0
        return self.fps

    def _status_line(self) -> str:
        if self.state == "waiting":
            away = [ch.grabber for ch in self.channels if ch.grabber is not None and not ch.grabber.stats.connected]
            grabber = away[0] if away else self.grabber
            error = grabber.stats.last_error if grabber else None
            return f"waiting for {grabber.name if grabber else 'the source'}" + (f": {error}" if error else "")
        result = self.last_result
        top = f", {result.label} {result.score:.0%}" if result and result.top else ""
        return f"{self.current_fps():.1f} fps, inference {self.inference_ms:.1f} ms, {self.frames} frames{top}"

    # ------------------------------------------------------------------ set-up

    def _load_model(self) -> None:
        model = self.config.model
        seed = self.config.model_seed
        if model is not None and seed is not None and bundles.seedable(model):  # the device's own model folder, first start
            bundles.seed(model, resolve_model(Path(seed)).model.parent)
            log.info("model folder %s did not exist: made it a copy of the shipped %s bundle (the models page deploys there)", model, seed)
        # a --model folder left incomplete (a switch killed half-way, a damaged file): the previous complete bundle, one warning
        model = bundles.recover(model) if model is not None else None
        self.files, self.classifier, self.acceleration, self.model_id = self._open_model(model)
        self._log_model("model")

    def _open_model(self, model: Path | None = None) -> tuple[ModelFiles, Classifier, Acceleration, str]:
        config = self.config
        files = resolve_model(model or config.model, config.labels)
        classifier, acceleration = load_classifier(files, config.delegate, config.device, config.threads, self.loader)
        return files, classifier, acceleration, f"{bundle_name(files)}@{classifier.sha256[:8]}"

    def _log_model(self, what: str) -> None:
        assert self.classifier is not None and self.files is not None and self.acceleration is not None
        h, w = self.classifier.size
        log.info(
            "%s %s (%s): %dx%dx%d input, %d classes, %s on %s, %s",
            what,
            self.files.model,
            self.model_id,
            h,
            w,
            self.classifier.channels,
            len(self.classifier.labels),
            _runtime_name(),
            self.acceleration.name,
            _threads_text(self.classifier.threads),
        )

    def _start_reload(self) -> None:
        """Open and check the model the config names (reread from disk) on a thread of its own, so that classifying goes on meanwhile."""
        self._reload.clear()
        loading = _Loading(self._last_image)

        def load() -> None:
            try:
                files, classifier, acceleration, new_id = self._open_model()
                if loading.image is not None:
                    scores = classifier.scores(loading.image)
                    if not np.all(np.isfinite(scores)):
                        raise EdgeAppError("it gives non-finite scores on the newest frame")
                loading.model = (files, classifier, acceleration, new_id)
            except Exception as exc:  # any failure refuses the new model; the old one keeps running
                loading.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

        loading.thread = threading.Thread(target=load, name="model-reload", daemon=True)
        self._loading = loading
        loading.thread.start()

    def _finish_reload(self) -> bool:
        """Between frames, once the new model is open: swap it in, or say why not and keep the old one."""
        loading = self._loading
        assert loading is not None
        self._loading = None
        ok = False
        error: str | None = loading.error
        if error is not None:
            log.error("model reload refused: %s; still running %s", error, self.model_id)
        else:
            assert loading.model is not None
            ok = self._swap_in(*loading.model, time.perf_counter() - loading.started)
        with self._reload_cond:
            self._reload_outcome = {"ok": ok, "model": self.model_id, "error": error}
            self._reload_seq += 1
            self._reload_cond.notify_all()
        return ok

    def _swap_in(self, files: ModelFiles, classifier: Classifier, acceleration: Acceleration, new_id: str, seconds: float) -> bool:
        old = self.model_id
        same_labels = self.classifier is not None and list(self.classifier.labels) == list(classifier.labels)
        self.files, self.classifier, self.acceleration, self.model_id = files, classifier, acceleration, new_id
        for ch in self.channels:
            for smoother in ch.smoothers:
                smoother.reset()
            if not same_labels:  # a state named by the old labels means nothing now
                for debouncer in ch.debouncers:
                    debouncer.reset()
            ch.last_label = None
            if ch.grabber is not None:
                ch.grabber.set_prepare(self._prepare_for(classifier) if self.balancer.on_capture else None)
                need, cover = ch.grabber.spec.reduce_to, ch.grabber.spec.reduce_cover
                if need is not None and (classifier.size[0] > need[0] or classifier.size[1] > need[1] or classifier.decode_cover > cover):
                    log.warning("the new model takes %dx%d, or a larger decode for its measured agreement (decode.cover), than the reduced decode gives: "
                                "restart edge-app to decode at a larger scale", *classifier.size)
        self.balancer.reset()  # the new model's invoke() costs differently
        self.model_reloads += 1
        if self.mqtt is not None:
            self.mqtt.update_model(classifier.labels, bundle_name(files))
        self._log_model(f"reloaded (was {old}; opened in {seconds * 1e3:.0f} ms while the old one classified):")
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
        """Whether frames are decoded at reduced scale: ``decode = reduced`` and no pixel zones need every full frame
        (fractional zones scale with the frame: the reduction is chosen so each still covers the model input);
        the window, the web view, snapshots and collecting are handed the compressed frames and decode only the ones they show or keep."""
        c = self.config
        if c.decode != "reduced":
            return False
        # the window, the web view, snapshots and collecting take the compressed frames and decode only those they show or keep
        if any(not z.fractional for z in self.zones):
            log.warning("decode = reduced is ignored: --zone in pixels needs the full frames, so they are decoded at full size")
            return False
        return True

    def _reduced_for(self, ch: _Channel) -> bool:
        """A source decodes at reduced scale unless outputs keep frames and it has no compressed frames to give them: picamera2's
        lores stream is a second, small image, so the web view, snapshots or collecting need its main stream (and zones, whose
        boxes are in the main stream's pixels)."""
        c = self.config
        window = not c.headless or self.display is not None
        keeps = [name for name, on in (("the window", window), ("--http", c.http), ("--snapshots", c.snapshots), ("--collect", c.collect),
                                       ("--zone", c.zone)) if on]
        if keeps and ch.spec.kind == "picamera2":
            log.warning("%s: decode = reduced is ignored: %s needs its full frames and picamera2's lores stream has no full-size "
                        "frame behind it, so the main stream feeds the model", ch.name, " and ".join(keeps))
            return False
        return True

    def _open_outputs(self) -> None:
        config = self.config
        for i, ch in enumerate(self.channels):
            self._open_channel_outputs(ch, first=i == 0)
        if config.mqtt is not None:
            mqtt = MqttSink(
                config.mqtt,
                device=config.mqtt_device,
                prefix=config.mqtt_prefix,
                every_n=config.mqtt_every,
                status=self.status,
                labels=self.classifier.labels if self.classifier else (),
                model=self.status()["model"],
                states=[self._state_name(ch, z.name) for ch in self.channels for z in self.zones]
                or ([self._state_name(ch, WHOLE_FRAME) for ch in self.channels] if self.reports_states else []),
            )
            self.mqtt = mqtt
            self.views.append(_Output("mqtt", mqtt))
        for i, extra in enumerate(self.extra_sinks):
            self.views.append(_Output(f"{type(extra).__name__} {i}", extra))

    def _open_channel_outputs(self, ch: _Channel, first: bool) -> None:
        """A source's own outputs: its window, snapshots, collect sink and log (per-source names when several run) and its web view feed."""
        config = self.config

        def own(path: Path) -> Path:
            return per_source_path(path, ch.name) if self.several else path

        display: Window | None = self.display if first else None
        if display is None and not config.headless:
            display = DisplaySink(f"edge-app {ch.name}" if self.several else "edge-app", config.snapshots)
            if first:
                self.display = display
        if display is not None:
            ch.views.append(_Output(f"display {ch.name}" if self.several else "display", display))
        if config.snapshots is not None:
            folder = own(config.snapshots)
            snapshots = SnapshotSink(folder, max_files=config.snapshot_max, min_score=config.snapshot_min_score,
                                     min_interval_s=config.snapshot_interval, annotate=True)
            ch.views.append(_Output(f"snapshots {folder}", snapshots))
        if config.collect is not None:
            collector = CollectSink(config.collect, interval_s=config.collect_interval, below=config.collect_below, min_gap_s=config.collect_min_gap,
                                    max_files=config.collect_max_files, max_bytes=int(config.collect_max_mb * 1e6),
                                    tag=ch.name if self.several else None)
            ch.views.append(_Output(f"collect {config.collect}", collector))
        if config.http is not None:
            if first:  # one server for every source: each has its own stream (/stream.mjpg?source=NAME), the page shows them all
                host, port = parse_hostport(config.http)
                self.web = WebServer(host, port, token=config.http_token, status=self.status, reload=self.reload_and_wait,
                                     sources=[c.name for c in self.channels], host_names=config.http_hosts,
                                     review=config.collect, labels=lambda: self.classifier.labels if self.classifier else (),  # /review
                                     models=self.desk)  # /models
                self.web.start()
            if self.web is not None:
                ch.views.append(_Output(f"web {config.http} {ch.name}" if self.several else f"web {config.http}", self.web.feed(ch.name)))
        if config.log is not None:
            path = own(config.log)
            logsink = make_log_sink(path, config.log_format, max_bytes=config.log_max_bytes, changes_only=config.log_changes_only)
            ch.records.append(_Output(f"log {path}", logsink))

    def _state_name(self, ch: _Channel, zone: str) -> str:
        """A zone's state name: ``door``, or ``camera1.door`` when several sources run (each source has its own states)."""
        return f"{ch.name}.{zone}" if self.several else zone

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Load, open, loop, clean up. Raises ``EdgeAppError`` subclasses for set-up failures; returns 0."""
        previous = self._install_signals()
        try:
            self._load_model()
            if self._stop.is_set():
                return 0
            assert self.classifier is not None
            reduced = self._decode_reduced()
            regions = tuple((z.h, z.w) for z in self.zones) or ((1.0, 1.0),)  # fractional zones: each must still cover the input
            for ch in self.channels:
                spec = (replace(ch.spec, reduce_to=self.classifier.size, reduce_regions=regions, reduce_cover=self.classifier.decode_cover)
                        if reduced and self._reduced_for(ch) else ch.spec)
                # preprocessing overlaps inference; with several sources, each grabber wakes the one frame loop
                prepare = self._prepare_for(self.classifier) if self.balancer.on_capture else None
                ch.grabber = FrameGrabber(spec, prepare=prepare, notify=self._ready if self.several else None)
                ch.grabber.start(cancel=self._stop)  # SIGTERM ends a slow open within POLL_S
                if self._stop.is_set():
                    return 0
            self._open_outputs()  # only now: a source that cannot be opened leaves no empty log file
            if self.config.model_url is not None and self.config.model is not None:
                self.poller = BundlePoller(self.config.model_url, self.config.model, poll_s=self.config.model_poll,
                                           reload=self.reload_and_wait, stop=self._stop)
                self.poller.start()
            self.state = "running"
            self.state_reached_running = True
            names = ", ".join(ch.grabber.name for ch in self.channels if ch.grabber is not None)
            self.notifier.ready(f"classifying {names}")
            log.info("running: %s -> %s", names, ", ".join(o.name for o in self.outputs()) or "no outputs")
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _next_frame(self) -> tuple[_Channel, Frame] | None:
        """The next frame to classify: the only source's, or, with several, the next source in turn that has one (round-robin)."""
        if not self.several:
            ch = self.channels[0]
            assert ch.grabber is not None
            frame = ch.grabber.get(timeout=POLL_S)
            return (ch, frame) if frame is not None else None
        deadline = time.monotonic() + POLL_S
        while True:
            self._ready.clear()  # before polling: a frame that arrives meanwhile sets it again
            n = len(self.channels)
            for k in range(n):
                ch = self.channels[(self._turn + k) % n]
                assert ch.grabber is not None
                frame = ch.grabber.get(timeout=0)
                if frame is not None:
                    self._turn = (self._turn + k + 1) % n
                    return ch, frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set() or not self._ready.wait(remaining):
                return None

    def _loop(self) -> None:
        config = self.config
        started = time.monotonic()
        next_stats = started + config.stats_interval if config.stats_interval > 0 else float("inf")
        next_status = started + STATUS_EVERY_S
        frames_at_stats = 0
        while not self._stop.is_set():
            self.notifier.watchdog()
            if self._loading is None and self._reload.is_set():
                self._start_reload()
            if self._loading is not None and not self._loading.thread.is_alive():
                self._finish_reload()
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
            cpu0 = time.thread_time()
            got = self._next_frame()
            if got is None:
                grabbers = [ch.grabber for ch in self.channels if ch.grabber is not None]
                if all(g.ended for g in grabbers):
                    self.request_stop("end of source" if len(grabbers) == 1 else "end of every source")
                    break
                if any(not g.stats.connected and not g.ended for g in grabbers) and self.state != "waiting":
                    self.state = "waiting"
                    self.notifier.status(self._status_line())
                if display is not None:
                    display.poll(1)
                continue
            if self.state != "running":
                self.state = "running"
                self.notifier.status(self._status_line())
            prepare_ms = self._process(*got, t0)
            if self.balancer.observe(got[1].capture_cpu_ms, (time.thread_time() - cpu0) * 1e3, prepare_ms):
                self._place_preparing()
            if config.max_frames is not None and self.frames >= config.max_frames:
                self.request_stop(f"max_frames {config.max_frames} reached")

    def _place_preparing(self) -> None:
        """Hand the capture thread the preparation, or take it away, as the balancer has just decided."""
        assert self.classifier is not None
        prepare = self._prepare_for(self.classifier) if self.balancer.on_capture else None
        for ch in self.channels:
            if ch.grabber is not None:
                ch.grabber.set_prepare(prepare)

    def _process(self, ch: _Channel, frame: Frame, t0: float) -> float:
        """Classify one frame and hand the result to every output; returns how long preparing its input took (on either thread), in ms."""
        classifier = self.classifier
        grabber = ch.grabber
        assert classifier is not None and grabber is not None
        if self.zones:  # the first frame of each size: a zone outside the frame is an error, never silently the whole frame
            size = (frame.image.shape[0] * frame.scale, frame.image.shape[1] * frame.scale)
            if size != ch.zones_checked:
                check_zones(self.zones, size[0], size[1], ch.spec.describe())
                ch.zones_checked = size
        t1 = time.perf_counter()
        reconnects = grabber.reconnects
        if reconnects != ch.reconnects_seen:  # a new capture: old scores say nothing about it
            ch.reconnects_seen = reconnects
            for smoother in ch.smoothers:
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
        for i, (smoother, debouncer) in enumerate(zip(ch.smoothers, ch.debouncers, strict=True)):
            zone_scores = smoother.update(classifier.invoke(inputs[i]))
            zone_top = top_k(zone_scores, classifier.labels, self.config.top_k, self.config.threshold)
            changed_state = debouncer.update(zone_top[0].label if zone_top else None, now)
            if i == 0:
                smoothed, top = zone_scores, zone_top
            if self.reports_states:
                zone = self.zones[i] if self.zones else None
                box = zone.box(frame.image.shape[0] * frame.scale, frame.image.shape[1] * frame.scale) if zone else None  # camera px
                name = self._state_name(ch, zone.name if zone else WHOLE_FRAME)
                states.append(ZoneResult(name, zone_top, debouncer.state, debouncer.dwell(now), changed_state, box))
        t3 = time.perf_counter()
        label = top[0].label if top else None
        t4 = time.perf_counter()
        ch.done.append(t4)
        fps = (len(ch.done) - 1) / (ch.done[-1] - ch.done[0]) if len(ch.done) > 1 else None
        self._done.append(t4)
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
            frame.index, now, top, latency, fps, label != ch.last_label, smoothed, grabber.name, frame.file, self.model_id,
            states or None, bool(self.zones), frame.clock,
        )
        self._write(ch.views + self.views, frame.image, result, frame.packet)
        t5 = time.perf_counter()
        if drawn:
            ch.last_draw_ms = (t5 - t4) * 1e3
            latency["draw"] = ch.last_draw_ms
            latency["total"] = (t5 - t0) * 1e3 + elsewhere_ms
        self._write(ch.records, frame.image, result)
        ch.last_label = label
        ch.last_result = result
        ch.frames += 1
        ch.fps = fps if fps is not None else 0.0
        self._last_image = frame.image
        self.last_result = result
        self.frames += 1
        done = self._done
        self.fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        invoke_ms = latency["invoke"]
        self.inference_ms = invoke_ms if self.frames == 1 else 0.9 * self.inference_ms + 0.1 * invoke_ms
        if self.first_result_at is None:
            self.first_result_at = time.monotonic()
        return prepare_ms

    def _write(self, outputs: list[_Output], image: np.ndarray, result: FrameResult, packet: np.ndarray | None = None) -> None:
        """Every output gets the frame; one that can take the compressed frame gets it instead of a reduced decode."""
        for out in outputs:
            try:
                if packet is not None and out.compressed is not None:
                    out.compressed.write_compressed(packet, result)
                else:
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
        errors = sum(o.errors for o in self.outputs())
        for ch in self.channels:
            stats = ch.grabber.stats if ch.grabber else CaptureStats()
            log.info(
                "stats%s: %.1f fps (%d frames in %.1f s), inference %.1f ms, %d frames total, dropped %d, reconnects %d%s%s",
                f" {ch.name}" if self.several else "",
                (ch.fps if self.several else self.fps) if frames else 0.0,
                ch.frames - ch.frames_at_stats if self.several else frames,
                interval,
                self.inference_ms,
                ch.frames,
                stats.dropped,
                stats.reconnects,
                f", output errors {errors}" if errors else "",
                "" if stats.connected or not ch.grabber or not ch.grabber.live else f", source away: {stats.last_error}",
            )
            ch.frames_at_stats = ch.frames

    def _shutdown(self) -> None:
        self.state = "stopping"
        reason = self.stop_reason or "error"
        self.notifier.stopping(f"stopping: {reason}")
        self._stop.set()
        if self._loading is not None:  # a reload still opening its model: let it finish, then drop it
            self._loading.thread.join(timeout=RELOAD_JOIN_S)
        with self._reload_cond:  # a POST /api/reload or the model-url poller waiting for a reload: it will not come
            self._reload_cond.notify_all()
        if self.poller is not None:
            self.poller.join()
        self.desk.close()  # a retrain-model job started from the models page ends with the app
        for ch in self.channels:
            if ch.grabber is not None:
                ch.grabber.stop()
        for out in self.outputs():
            try:
                out.sink.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", out.name, exc)
        if self.web is not None:  # its feeds (closed above) close nothing: the server sends the newest frames and ends the streams
            try:
                self.web.close()
            except Exception as exc:
                log.warning("closing the web view failed: %s", exc)
        self.notifier.close()
        if self.state_reached_running:
            elapsed = time.monotonic() - self.created
            for ch in self.channels:
                if ch.grabber is None:
                    continue
                stats = ch.grabber.stats
                log.info(
                    "stopped (%s): %s%d frames in %.1f s, dropped %d, reconnects %d",
                    reason,
                    f"{ch.name}: " if self.several else "",
                    ch.frames,
                    elapsed,
                    stats.dropped,
                    stats.reconnects,
                )
        self.state = "stopped"


def bundle_name(files: ModelFiles) -> str:
    """``cifar10`` for ``models/cifar10/model.tflite``; the file name for any other model file."""
    return files.model.parent.name if files.model.name == "model.tflite" else files.model.name


def _threads_text(threads: int | None) -> str:
    return "the runtime's default threads" if threads is None else f"{threads} interpreter thread{'' if threads == 1 else 's'}"


def _runtime_name() -> str:
    try:
        rt = get_runtime()
    except Exception:
        return "none"
    return f"{rt.name} {rt.version}"

