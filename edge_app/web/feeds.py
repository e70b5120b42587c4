"""One source's live view (``Feed``: the newest frame, one JPEG of it shared by every viewer) and the Prometheus metrics.

``write()`` only stores a reference to the newest frame and updates counters: it never encodes and never waits for a
client (with ``--decode reduced`` it is handed the compressed frame instead, ``write_compressed()``, and the encoder
decodes at full size only the frames it streams). One encoder thread per feed draws and JPEG-encodes the newest frame
at most ``max_fps`` times a second, and only while someone watches; every viewer (a coroutine on the web server's event
loop, ``next_jpeg_async``) sends that same shared JPEG, skipping frames it was too slow for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_app.outputs import FrameResult
from edge_app.outputs.draw import draw_overlay

if TYPE_CHECKING:
    from edge_app.web.live import WebServer

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - prometheus-client is a dependency, but a hand-made venv may lack it
    HAVE_PROMETHEUS = False

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _set(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    """Wake coroutines waiting on another thread's event loop (thread-safe)."""
    for waiter in waiters:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
            waiter.get_loop().call_soon_threadsafe(_set, waiter)


class Metrics:
    """Prometheus metrics in a private registry (several servers in one process never clash)."""

    def __init__(self, status: Callable[[], dict[str, Any]], viewers: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter("edge_app_frames", "Frames classified", registry=self.registry)
        self.inference = Histogram(
            "edge_app_inference_latency_seconds", "Model invoke time per frame", buckets=LATENCY_BUCKETS_S, registry=self.registry
        )
        self.end_to_end = Histogram(
            "edge_app_frame_latency_seconds", "End-to-end time per frame (capture to outputs)", buckets=LATENCY_BUCKETS_S, registry=self.registry
        )
        self.fps = Gauge("edge_app_fps", "Frames per second of the frame loop", registry=self.registry)
        self.viewers = Gauge("edge_app_stream_clients", "Open MJPEG stream connections", registry=self.registry)
        self.viewers.set_function(lambda: float(viewers()))
        self.registry.register(StatusCollector(status))

    def observe(self, result: FrameResult) -> None:
        self.frames.inc()
        if "invoke" in result.latency_ms:
            self.inference.observe(result.latency_ms["invoke"] / 1e3)
        if "total" in result.latency_ms:
            self.end_to_end.observe(result.latency_ms["total"] / 1e3)
        if result.fps is not None:
            self.fps.set(result.fps)


class StatusCollector:
    """Counters the app owns (dropped frames, reconnects, uptime), read from ``status()`` at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Any]:
        try:
            s = self.status()
        except Exception:
            log.exception("status() failed during a /metrics scrape")
            return
        for key, name, doc in (
            ("dropped", "edge_app_dropped_frames", "Frames captured but never classified (newest frame wins)"),
            ("reconnects", "edge_app_source_reconnects", "Times the live source was reopened after a failure"),
        ):
            if isinstance(s.get(key), int | float):
                yield CounterMetricFamily(name, doc, value=float(s[key]))
        if isinstance(s.get("uptime_s"), int | float):
            yield GaugeMetricFamily("edge_app_uptime_seconds", "Seconds since the app started", value=float(s["uptime_s"]))


class Feed:
    """One source's view: the newest frame (a reference), one JPEG of it shared by every viewer, encoded by its own
    thread at most ``max_fps`` times a second and only while someone watches. A sink of the frame loop."""

    def __init__(self, web: WebServer, name: str) -> None:
        self.web = web
        self.name = name
        self.encoded = 0  # JPEGs made (shared by all viewers)
        self.writes = 0
        self._frame_cond = threading.Condition(threading.Lock())  # a new frame or a new viewer arrived
        self._jpeg_cond = threading.Condition(threading.Lock())  # a new JPEG is ready
        self._frame: np.ndarray | None = None
        self._packet: np.ndarray | None = None  # or the compressed frame (--decode reduced): decoded only to be encoded
        self._result: FrameResult | None = None
        self._frame_seq = 0
        self._last_write: float | None = None
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._jpeg_frame_seq = 0  # which frame the current JPEG shows
        self._waiters: list[asyncio.Future[None]] = []  # viewers on the web server's event loop, woken by a new JPEG
        self.viewers = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Keep a reference to the newest frame (do not modify it afterwards) and count it. Never blocks on clients."""
        self._keep(frame, None, result)

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        """The newest frame as its compressed JPEG (``--decode reduced``): decoded at full size only if it gets streamed."""
        self._keep(None, jpeg, result)

    def _keep(self, frame: np.ndarray | None, packet: np.ndarray | None, result: FrameResult) -> None:
        with self._frame_cond:
            self._frame, self._packet = frame, packet
            self._result = result
            self._frame_seq += 1
            self._last_write = time.monotonic()
            self.writes += 1
            if self.viewers:
                self._frame_cond.notify_all()
        if self.web.metrics is not None:
            self.web.metrics.observe(result)

    def close(self) -> None:
        """Nothing: the ``WebServer`` ends every feed when it closes."""

    def newest(self) -> tuple[FrameResult | None, float | None]:
        """The newest result and its ``time.monotonic()``."""
        with self._frame_cond:
            return self._result, self._last_write

    def wake(self) -> None:
        with self._frame_cond:
            self._frame_cond.notify_all()

    def wake_viewers(self) -> None:
        with self._jpeg_cond:
            self._jpeg_cond.notify_all()
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def encode_loop(self) -> None:
        """Encode the newest frame while someone watches, at most ``max_fps`` times a second; on close, once more without waiting."""
        closing_event = self.web._closing
        interval = 1.0 / self.web.max_fps
        done_seq = 0
        last = 0.0
        while True:
            with self._frame_cond:
                while not closing_event.is_set() and (self.viewers == 0 or self._frame_seq == done_seq):
                    self._frame_cond.wait(0.5)
                if self.viewers == 0 or self._frame_seq == done_seq:
                    return  # closing, with no viewer or no frame left to encode
            closing = closing_event.is_set()
            wait = last + interval - time.monotonic()
            if wait > 0 and not closing:
                closing = closing_event.wait(wait)  # close() cuts the wait short: the newest frame goes out now
            with self._frame_cond:
                if self.viewers == 0:
                    continue  # the viewers left while we waited
                frame, packet, result, done_seq = self._frame, self._packet, self._result, self._frame_seq
            if frame is None and packet is not None:
                frame = cv2.imdecode(packet, cv2.IMREAD_COLOR)  # full size, on this thread, for the frames that are streamed
                if frame is None:
                    log.error("cannot decode frame %d for the web view: not a JPEG", result.index if result else -1)
            if frame is None or result is None:
                continue
            last = time.monotonic()
            jpeg = self._encode(frame, result)
            if jpeg is not None:
                with self._jpeg_cond:
                    self._jpeg = jpeg
                    self._jpeg_seq += 1
                    self._jpeg_frame_seq = done_seq
                    self._jpeg_cond.notify_all()
                    waiters, self._waiters = self._waiters, []
                _wake(waiters)
            if closing:
                return

    def _encode(self, frame: np.ndarray, result: FrameResult) -> bytes | None:
        try:
            image = draw_overlay(frame, result) if self.web.annotate else frame
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.web.jpeg_quality])
        except (cv2.error, ValueError) as exc:
            log.error("cannot encode frame %d for the web view: %s", result.index, exc)
            return None
        if not ok:
            return None
        self.encoded += 1
        return data.tobytes()

    def first_seq(self) -> int:
        """Where a new viewer starts: just before the current JPEG if it shows the newest frame, else after it."""
        with self._frame_cond:
            newest = self._frame_seq
        with self._jpeg_cond:
            return self._jpeg_seq - 1 if self._jpeg is not None and self._jpeg_frame_seq == newest else self._jpeg_seq

    def current_jpeg(self, timeout: float = 2.0) -> bytes | None:
        """The annotated JPEG of the newest frame, waiting up to ``timeout`` for it (else the last one made)."""
        self.add_viewer(1)
        try:
            jpeg, _ = self.next_jpeg(self.first_seq(), timeout)
            return jpeg if jpeg is not None else self._jpeg
        finally:
            self.add_viewer(-1)

    def next_jpeg(self, after_seq: int, timeout: float) -> tuple[bytes | None, int]:
        """The first JPEG newer than ``after_seq`` (or ``None`` on timeout or shutdown) and its number."""
        deadline = time.monotonic() + timeout
        with self._jpeg_cond:
            while self._jpeg_seq <= after_seq and not self.web.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, after_seq
                self._jpeg_cond.wait(min(remaining, 0.5))
            if self._jpeg_seq <= after_seq:
                return None, after_seq
            return self._jpeg, self._jpeg_seq

    async def next_jpeg_async(self, after_seq: int, timeout: float) -> tuple[bytes | None, int]:
        """``next_jpeg`` for a coroutine on the web server's event loop: it waits without blocking the loop (the encoder
        thread wakes it through ``call_soon_threadsafe``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._jpeg_cond:
                if self._jpeg_seq > after_seq:
                    return self._jpeg, self._jpeg_seq
                if self.web.stopping:
                    return None, after_seq
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None, after_seq
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                with self._jpeg_cond, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def snapshot_async(self, timeout: float = 2.0) -> bytes | None:
        """``current_jpeg`` without blocking the event loop."""
        self.add_viewer(1)
        try:
            jpeg, _ = await self.next_jpeg_async(self.first_seq(), timeout)
            return jpeg if jpeg is not None else self._jpeg
        finally:
            self.add_viewer(-1)

    def add_viewer(self, delta: int) -> None:
        with self._frame_cond:
            self.viewers += delta
            self._frame_cond.notify_all()
