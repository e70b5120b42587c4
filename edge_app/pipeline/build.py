"""Every output of a run: each source's window, snapshots, collect folder, log and web view feed; MQTT and extra sinks.

``RunOutputs.open`` builds them (after the sources are open: a source that cannot be opened leaves no empty log
file); what it has built so far is closed by ``close`` even when building fails half-way. With several sources each
gets its own log file and snapshot folder (``per_source_path``), window, collect tag and web feed; one web server and
one MQTT connection serve them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_app.collect import CollectSink
from edge_app.config import AppConfig, parse_hostport
from edge_app.deploy import ModelDesk
from edge_app.mqtt import MqttSink
from edge_app.outputs import Sink
from edge_app.outputs.display import DisplaySink
from edge_app.outputs.logsink import make_log_sink
from edge_app.outputs.snapshots import SnapshotSink
from edge_app.pipeline import LOGGER
from edge_app.pipeline.channel import Channel, per_source_path
from edge_app.pipeline.fanout import Output, close_all
from edge_app.pipeline.loop import Window
from edge_app.pipeline.modelslot import ModelSlot
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.web import WebServer

log = logging.getLogger(LOGGER)


class RunOutputs:
    """The outputs of a run: ``views`` shared by every source (MQTT, extra sinks), each channel's own, the window and the web server.

    ``display``: a window given by the caller is used for the first source instead of a ``DisplaySink``.
    """

    def __init__(self, config: AppConfig, display: Window | None = None) -> None:
        self.config = config
        self.display: Window | None = display  # DisplaySink unless headless; given: used instead
        self.web: WebServer | None = None  # --http: one server, a feed per source among each source's views; closed last
        self.mqtt: MqttSink | None = None
        self.views: list[Output] = []  # shared by every source (MQTT, extra sinks; the web view and its status), drawn before the result is final

    def open(self, channels: Sequence[Channel], zones: ZoneClassifier, slot: ModelSlot, *, extra_sinks: Sequence[Sink] = (),
             status: Callable[[], dict[str, Any]], reload: Callable[..., dict[str, Any]], desk: ModelDesk) -> None:
        """Open every output; ``status`` and ``reload`` serve the web view and MQTT, ``desk`` the models page."""
        config = self.config
        several = len(channels) > 1
        for i, ch in enumerate(channels):
            self._open_channel(ch, channels, slot, first=i == 0, several=several, status=status, reload=reload, desk=desk)
        broker = config.mqtt
        if broker.url is not None:
            mqtt = MqttSink(
                broker.url,
                device=broker.device,
                prefix=broker.prefix,
                every_n=broker.every,
                status=status,
                labels=slot.classifier.labels if slot.classifier else (),
                model=slot.name,
                states=zones.state_names([ch.name for ch in channels]),
            )
            self.mqtt = mqtt
            self.views.append(Output("mqtt", mqtt))
        for i, extra in enumerate(extra_sinks):
            self.views.append(Output(f"{type(extra).__name__} {i}", extra))

    def _open_channel(self, ch: Channel, channels: Sequence[Channel], slot: ModelSlot, *, first: bool, several: bool,
                      status: Callable[[], dict[str, Any]], reload: Callable[..., dict[str, Any]], desk: ModelDesk) -> None:
        """A source's own outputs: its window, snapshots, collect sink and log (per-source names when several run) and its web view feed."""
        config = self.config
        shots, collect, http, record = config.snapshots, config.collect, config.http, config.log

        def own(path: Path) -> Path:
            return per_source_path(path, ch.name) if several else path

        display: Window | None = self.display if first else None
        if display is None and not config.run.headless:
            display = DisplaySink(f"edge-app {ch.name}" if several else "edge-app", shots.dir)
            if first:
                self.display = display
        if display is not None:
            ch.views.append(Output(f"display {ch.name}" if several else "display", display))
        if shots.dir is not None:
            folder = own(shots.dir)
            snapshots = SnapshotSink(folder, max_files=shots.max, min_score=shots.min_score, min_interval_s=shots.interval, annotate=True)
            ch.views.append(Output(f"snapshots {folder}", snapshots))
        if collect.dir is not None:
            collector = CollectSink(collect.dir, interval_s=collect.interval, below=collect.below, min_gap_s=collect.min_gap,
                                    max_files=collect.max_files, max_bytes=int(collect.max_mb * 1e6), tag=ch.name if several else None)
            ch.views.append(Output(f"collect {collect.dir}", collector))
        if http.listen is not None:
            if first:  # one server for every source: each has its own stream (/stream.mjpg?source=NAME), the page shows them all
                host, port = parse_hostport(http.listen)
                doctor = None
                if collect.dir is not None:  # the review page's dataset doctor: the running model's input and features
                    from edge_app.doctor import RunningModel  # noqa: PLC0415 - OpenCV, only with a review page

                    doctor = RunningModel(slot)
                self.web = WebServer(host, port, token=http.token, status=status, reload=reload,
                                     sources=[c.name for c in channels], host_names=http.hosts,
                                     review=collect.dir, labels=lambda: slot.classifier.labels if slot.classifier else (),  # /review
                                     models=desk, doctor=doctor)  # /models
                self.web.start()
            if self.web is not None:
                ch.views.append(Output(f"web {http.listen} {ch.name}" if several else f"web {http.listen}", self.web.feed(ch.name)))
        if record.path is not None:
            path = own(record.path)
            logsink = make_log_sink(path, record.format, max_bytes=record.max_bytes, changes_only=record.changes_only)
            ch.records.append(Output(f"log {path}", logsink))

    def all(self, channels: Sequence[Channel]) -> list[Output]:
        """Every output: the shared views, then each source's own."""
        return self.views + [o for ch in channels for o in ch.outputs()]

    def close(self, channels: Sequence[Channel]) -> None:
        """Close every output, then the web server: its feeds (closed first) close nothing; it sends the newest frames and ends the streams."""
        close_all(self.all(channels))
        if self.web is not None:
            try:
                self.web.close()
            except Exception as exc:
                log.warning("closing the web view failed: %s", exc)
