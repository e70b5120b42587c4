"""``WebServer``: the live view over HTTP, as a sink of the frame loop.

Routes: ``/`` (a page with the live stream and the current top-k), ``/stream.mjpg`` (MJPEG),
``/snapshot.jpg`` (the current annotated frame), ``/api/status`` (JSON), ``/healthz`` (200 while
frames flow, else 503) and ``/metrics`` (Prometheus text). ``/status`` and ``/health`` are aliases.
``POST /api/reload`` reloads the model between frames and answers with the outcome (200 swapped in,
409 refused: the old model keeps running); state-changing requests are refused from other sites
(an ``Origin`` that is not this server, or ``Sec-Fetch-Site: cross-site``) and, with a token, take it only
in the ``Authorization`` header, never in the URL. Every request's ``Host`` must name this server
(``webgate.AllowedHosts``: the bound address, loopback names when bound there or to every interface, the
machine's host names, the address the request arrived on, and ``host_names``), else it is answered 400
before any route: a DNS-rebinding page, whose ``Host`` and ``Origin`` both carry its own name, reaches
nothing. Served beyond loopback without a token, ``start()`` logs a warning.

``write()`` only stores a reference to the newest frame and updates counters: it never encodes
and never waits for a client (with ``--decode reduced`` it is handed the compressed frame instead,
``write_compressed()``, and the encoder decodes at full size only the frames it streams). One encoder thread draws and JPEG-encodes the newest frame at most
``max_fps`` times a second, and only while someone watches; every viewer's thread sends that same
shared JPEG, skipping frames it was too slow for. Client sockets have a timeout, so a viewer that
stops reading is dropped without affecting anyone else. ``close()`` first encodes the newest frame
if no viewer has it yet and lets every viewer send it, then ends the streams: a short run still
reaches the viewers that watched it. With ``token`` set, every route except
``/healthz`` needs ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (for browsers).

Connections go through ``webgate.GatedHTTPServer``: a request head must arrive whole within
``header_timeout_s``, at most ``max_active`` requests (viewers included) are served at once, and
``/healthz`` is always answered, so slow or hostile clients cannot exhaust threads.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge_app.errors import ConfigError, OutputError
from edge_app.httpauth import cross_site, token_matches
from edge_app.outputs import FrameResult
from edge_app.outputs.draw import draw_overlay
from edge_app.webgate import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_ACTIVE,
    AllowedHosts,
    Arrived,
    GatedHTTPServer,
    GatedHTTPServerV6,
    Prefixed,
    warn_without_token,
)

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - the integrations extra is not installed
    HAVE_PROMETHEUS = False

log = logging.getLogger(__name__)

BOUNDARY = "edgeappframe"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PUBLIC_PATHS = ("/healthz", "/health")
HOST_HINT = "; add it to http_hosts (--http-hosts NAME) to serve it"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; background: #111; color: #eee; }}
main {{ display: flex; flex-wrap: wrap; gap: 16px; padding: 16px; }}
#view {{ flex: 1 1 400px; max-width: 960px; }}
#view img {{ width: 100%; background: #000; display: block; border-radius: 4px; }}
aside {{ flex: 0 1 260px; }}
h1 {{ font-size: 1.1rem; margin: 0 0 8px; }}
.row {{ margin: 6px 0; }} .bar {{ height: 8px; background: #3c8; border-radius: 2px; }}
.row:not(:first-child) .bar {{ background: #48c; }}
dl {{ display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; font-size: .9rem; color: #bbb; }}
dd {{ margin: 0; color: #eee; }} #err {{ color: #f88; }}
</style></head>
<body><main>
<div id="view"><img id="stream" alt="live stream" src="stream.mjpg"></div>
<aside><h1>{title}</h1><div id="top"></div><dl id="stats"></dl><div id="err"></div></aside>
</main>
<script>
const q = location.search;
document.getElementById("stream").src = "stream.mjpg" + q;
const esc = s => String(s).replace(/[&<>"]/g, c => ({{"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}}[c]));
async function refresh() {{
  try {{
    const r = await fetch("api/status" + q, {{cache: "no-store"}});
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const s = await r.json();
    const top = (s.last && s.last.top) || [];
    document.getElementById("top").innerHTML = top.map(c =>
      `<div class="row">${{esc(c.label)}} ${{(c.score * 100).toFixed(0)}}%<div class="bar" style="width:${{(c.score * 100).toFixed(1)}}%"></div></div>`
    ).join("") || "<div class=row>no confident class</div>";
    const keys = ["model", "source", "fps", "inference_ms", "frames", "dropped", "reconnects", "uptime_s", "viewers"];
    document.getElementById("stats").innerHTML = keys.filter(k => s[k] !== undefined && s[k] !== null).map(k =>
      `<dt>${{k}}</dt><dd>${{esc(typeof s[k] === "number" ? +s[k].toFixed(2) : s[k])}}</dd>`).join("");
    document.getElementById("err").textContent = "";
  }} catch (e) {{ document.getElementById("err").textContent = "status: " + e.message; }}
}}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


OVERVIEW = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; background: #111; color: #eee; }}
h1 {{ font-size: 1.1rem; margin: 16px 16px 0; }} #err {{ color: #f88; margin: 0 16px; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 16px; padding: 16px; }}
figure {{ margin: 0; }} figure img {{ width: 100%; background: #000; display: block; border-radius: 4px; }}
figcaption {{ font-size: .9rem; color: #bbb; margin-top: 4px; }} a {{ color: inherit; }}
</style></head>
<body><h1>{title}</h1><div id="err"></div><main>{figures}</main>
<script>
const token = new URLSearchParams(location.search).get("token");
const query = extra => {{ const p = new URLSearchParams(extra); if (token) p.set("token", token); return "?" + p; }};
document.querySelectorAll("figure[data-source]").forEach(f => {{
  const q = query({{source: f.dataset.source}});
  f.querySelector("a").href = q;
  f.querySelector("img").src = "stream.mjpg" + q;
}});
async function refresh() {{
  try {{
    const r = await fetch("api/status" + query({{}}), {{cache: "no-store"}});
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const s = await r.json();
    (s.sources || []).forEach(e => {{
      const f = [...document.querySelectorAll("figure[data-source]")].find(f => f.dataset.source === e.name);
      if (f) f.querySelector("figcaption").textContent = `${{e.name}}: ${{e.label === null ? "no confident class" : e.label + " " +
        (e.score * 100).toFixed(0) + "%"}} \u00b7 ${{e.fps}} fps${{e.connected ? "" : " \u00b7 away"}}`;
    }});
    document.getElementById("err").textContent = "";
  }} catch (e) {{ document.getElementById("err").textContent = "status: " + e.message; }}
}}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


class _Metrics:
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
        self.registry.register(_StatusCollector(status))

    def observe(self, result: FrameResult) -> None:
        self.frames.inc()
        if "invoke" in result.latency_ms:
            self.inference.observe(result.latency_ms["invoke"] / 1e3)
        if "total" in result.latency_ms:
            self.end_to_end.observe(result.latency_ms["total"] / 1e3)
        if result.fps is not None:
            self.fps.set(result.fps)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _StatusCollector:
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


class _Feed:
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

    def add_viewer(self, delta: int) -> None:
        with self._frame_cond:
            self.viewers += delta
            self._frame_cond.notify_all()


class WebServer:
    """Serves the live view (see the module doc). ``start()`` binds; ``port`` is the real port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        reload: Callable[[float], dict[str, Any]] | None = None,
        max_fps: float = 10.0,
        jpeg_quality: int = 80,
        annotate: bool = True,
        health_timeout_s: float = 5.0,
        client_timeout_s: float = 10.0,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        max_active: int = DEFAULT_MAX_ACTIVE,
        title: str = "edge-app",
        sources: Sequence[str] = (),
        host_names: Sequence[str] = (),
    ) -> None:
        if not max_fps > 0:
            raise ConfigError(f"web max_fps must be above 0, got {max_fps}; e.g. 10")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"web JPEG quality must be 1..100, got {jpeg_quality}")
        if token is not None and not token.strip():
            raise ConfigError("the web token is empty; set a non-empty token or none at all")
        if len(set(sources)) != len(sources):
            raise ConfigError(f"web view sources must have distinct names, got {', '.join(sources)}")
        self.host = host
        self.port = port
        self.token = token
        # the Host names every request must carry (DNS rebinding): the bound address and its names, plus host_names
        self.hosts = AllowedHosts(host, host_names, HOST_HINT)
        self.status = status or dict
        self.reload = reload
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self.annotate = annotate
        self.health_timeout_s = health_timeout_s
        self.client_timeout_s = client_timeout_s
        self.header_timeout_s = header_timeout_s
        self.max_active = max_active
        self.title = title
        # one feed per source (the newest frame, its shared JPEG, its viewers); write() feeds the first
        self.feeds: dict[str, _Feed] = {name: _Feed(self, name) for name in (sources or ("",))}
        self._first = next(iter(self.feeds.values()))
        self._closing = threading.Event()  # close() began: the encoder does its last frame and ends
        self._stopping = threading.Event()  # the encoder is done: viewers send what they have not sent yet and end
        self._server: GatedHTTPServer | None = None
        self._encoders: list[threading.Thread] = []
        self._threads: list[threading.Thread] = []
        self.metrics = _Metrics(self._safe_status, lambda: self.viewers) if HAVE_PROMETHEUS else None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else f"[{self.host}]" if ":" in self.host else self.host  # noqa: S104
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        if self._server is not None:
            return self
        handler = _make_handler(self)
        server_cls = GatedHTTPServerV6 if ":" in self.host else GatedHTTPServer
        try:
            server = server_cls(
                (self.host, self.port), handler, header_timeout_s=self.header_timeout_s, max_active=self.max_active, cheap_paths=PUBLIC_PATHS
            )
        except OSError as exc:
            raise OutputError(
                f"cannot serve the web view on {self.host}:{self.port}: {exc.strerror or exc}; choose another port or stop the program using it"
            ) from exc
        self._server = server
        self.port = int(server.server_address[1])
        if self.metrics is None:
            log.warning("prometheus-client is not installed: /metrics answers 501 (pip install prometheus-client)")
        self._encoders = [threading.Thread(target=feed.encode_loop, name=f"web-encoder {feed.name}".rstrip(), daemon=True)
                          for feed in self.feeds.values()]
        for t in [threading.Thread(target=server.serve_forever, name="web-server", daemon=True), *self._encoders]:
            t.start()
            self._threads.append(t)
        log.info("web view on %s%s", self.url, " (token required)" if self.token else "")
        warn_without_token(log, "the web view", self.host, self.token, "set http_token (--http-token) or serve 127.0.0.1 only")
        return self

    def close(self) -> None:
        """Stop: the newest frame is encoded and sent to the viewers still watching, then their streams end."""
        self._closing.set()
        for feed in self.feeds.values():
            feed.wake()
        for t in self._encoders:
            t.join(timeout=5)
        self._stopping.set()
        for feed in self.feeds.values():
            feed.wake_viewers()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ Sink

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """The first source's frame (the only one, unless several run: ``feed(name)`` is each one's sink). Never blocks on clients."""
        self._first.write(frame, result)

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        self._first.write_compressed(jpeg, result)

    def feed(self, name: str) -> _Feed:
        """The sink of source ``name`` (one of ``sources``)."""
        return self.feeds[name]

    def feed_for(self, query: dict[str, list[str]]) -> _Feed | None:
        """The feed a request's ``?source=NAME`` names (the first without one); None if there is no such source."""
        names = query.get("source")
        return self._first if not names else self.feeds.get(names[0])

    @property
    def several(self) -> bool:
        return len(self.feeds) > 1

    @property
    def encoded(self) -> int:
        """JPEGs made, every source (each shared by all of its viewers)."""
        return sum(f.encoded for f in self.feeds.values())

    @property
    def writes(self) -> int:
        return sum(f.writes for f in self.feeds.values())

    @property
    def viewers(self) -> int:
        return sum(f.viewers for f in self.feeds.values())

    def current_jpeg(self, timeout: float = 2.0) -> bytes | None:
        return self._first.current_jpeg(timeout)

    # ------------------------------------------------------------------ status

    def _safe_status(self) -> dict[str, Any]:
        try:
            return dict(self.status())
        except Exception as exc:
            log.exception("status() failed")
            return {"status_error": f"{type(exc).__name__}: {exc}"}

    def status_json(self, feed: _Feed | None = None) -> dict[str, Any]:
        """The app's status with the newest result of ``feed`` (default: the first source), its age and the viewers.

        With several sources ``views`` names them; asked for one (``?source=NAME``), that source's own
        counters (fps, frames, dropped, ...) replace the totals over all of them."""
        data = self._safe_status()
        if self.several:
            data["views"] = list(self.feeds)
            if feed is not None:
                data["view"] = feed.name
                own = next((e for e in data.get("sources", []) if isinstance(e, dict) and e.get("name") == feed.name), {})
                data.update({k: v for k, v in own.items() if k != "name"})
        feed = feed or self._first
        result, last_write = feed.newest()
        data["last"] = result.to_json_dict() if result is not None else None
        data["last_frame_age_s"] = round(time.monotonic() - last_write, 3) if last_write is not None else None
        data["viewers"] = self.viewers
        return data

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): healthy while every source's newest frame is at most ``health_timeout_s`` old."""
        now = time.monotonic()
        stale = []
        for feed in self.feeds.values():
            _, last = feed.newest()
            why = "no frames yet" if last is None else f"no frame for {now - last:.1f} s" if now - last > self.health_timeout_s else None
            if why:
                stale.append(f"{feed.name}: {why}" if self.several else why)
        return (False, "; ".join(stale)) if stale else (True, "ok")

    def authorized(self, headers: Any, query: dict[str, list[str]]) -> bool:
        if self.token is None:
            return True
        return token_matches(self.token, headers.get("Authorization"), query.get("token", []))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()


def _make_handler(web: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-app"
        sys_version = ""
        timeout = web.client_timeout_s  # socket timeout: a client that stops reading is dropped

        def setup(self) -> None:
            """The gate already read the request head: serve it from that buffer, then from the socket."""
            arrived = self.request
            if isinstance(arrived, Arrived):
                self.request = arrived.sock
            super().setup()
            if isinstance(arrived, Arrived):
                self.rfile = io.BufferedReader(Prefixed(arrived.head, self.connection))

        def parse_request(self) -> bool:
            """Every request, whatever its method and path, first passes the ``Host`` check (DNS rebinding): a name
            that is not this server's gets 400 here and reaches no handler."""
            if not super().parse_request():
                return False
            try:
                local: str | None = str(self.connection.getsockname()[0])
            except (OSError, IndexError, TypeError):
                local = None
            refusal = web.hosts.refusal(self.headers.get_all("Host") or [], local)
            if refusal is None:
                return True
            log.debug("web request from %s refused: %s", self.address_string(), refusal)
            self.close_connection = True
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
                self._send(HTTPStatus.BAD_REQUEST, f"{refusal}\n".encode(), "text/plain; charset=utf-8", {"Connection": "close"})
            return False

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            path = urlsplit(self.path).path.rstrip("/")
            text = "text/plain; charset=utf-8"
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 65536))  # no body is needed; read it so the connection stays usable
                if cross_site(self.headers.get("Origin"), self.headers.get("Host"), self.headers.get("Sec-Fetch-Site")):
                    self._send(HTTPStatus.FORBIDDEN, b"forbidden: cross-site requests may not change anything\n", text)
                    return
                if not web.authorized(self.headers, {}):  # a token only in the header: a URL can be leaked or forged
                    self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized: send Authorization: Bearer TOKEN\n", text,
                               {"WWW-Authenticate": 'Bearer realm="edge-app"'})
                    return
                if path != "/api/reload":
                    self._send(HTTPStatus.NOT_FOUND, f"not found: POST {path}; try POST /api/reload\n".encode(), text)
                    return
                if web.reload is None:
                    self._send(HTTPStatus.NOT_IMPLEMENTED, b"this server has no model to reload\n", text)
                    return
                outcome = web.reload(30.0)
                code = HTTPStatus.OK if outcome.get("ok") else HTTPStatus.ACCEPTED if outcome.get("pending") else HTTPStatus.CONFLICT
                self._send(code, json.dumps(outcome).encode(), "application/json")
            except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
                log.debug("web client %s went away: %s", self.address_string(), exc)
                self.close_connection = True
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, b"bad Content-Length\n", text)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            query = parse_qs(parts.query)
            try:
                if path not in PUBLIC_PATHS and not web.authorized(self.headers, query):
                    self._send(
                        HTTPStatus.UNAUTHORIZED,
                        b"unauthorized: send Authorization: Bearer TOKEN or add ?token=TOKEN\n",
                        "text/plain; charset=utf-8",
                        {"WWW-Authenticate": 'Bearer realm="edge-app"'},
                    )
                    return
                route = ROUTES.get(path)
                if route is None:
                    hint = f"not found: {path}; try / /stream.mjpg /snapshot.jpg /api/status /healthz /metrics\n"
                    self._send(HTTPStatus.NOT_FOUND, hint.encode(), "text/plain; charset=utf-8")
                    return
                route(self, query)
            except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
                log.debug("web client %s went away: %s", self.address_string(), exc)
                self.close_connection = True

        def page(self, query: dict[str, list[str]]) -> None:
            if web.several and not query.get("source"):
                figures = "".join(f'<figure data-source="{html.escape(n)}"><a><img alt="{html.escape(n)}"></a>'
                                  f"<figcaption>{html.escape(n)}</figcaption></figure>" for n in web.feeds)
                body = OVERVIEW.format(title=html.escape(web.title), figures=figures).encode()
            else:
                feed = self._feed(query)
                if feed is None:
                    return
                title = f"{web.title} {feed.name}" if web.several else web.title
                body = PAGE.format(title=html.escape(title)).encode()
            self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")

        def status(self, query: dict[str, list[str]]) -> None:
            feed = self._feed(query)
            if feed is None:
                return
            body = json.dumps(web.status_json(feed if query.get("source") else None), default=str).encode()
            self._send(HTTPStatus.OK, body, "application/json")

        def healthz(self, query: dict[str, list[str]]) -> None:
            ok, reason = web.health()
            self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, (reason + "\n").encode(), "text/plain; charset=utf-8")

        def metrics(self, query: dict[str, list[str]]) -> None:
            if web.metrics is None:
                self._send(HTTPStatus.NOT_IMPLEMENTED, b"metrics need prometheus-client: pip install prometheus-client\n", "text/plain; charset=utf-8")
                return
            self._send(HTTPStatus.OK, web.metrics.render(), CONTENT_TYPE_LATEST)

        def _feed(self, query: dict[str, list[str]]) -> _Feed | None:
            """The feed ``?source=NAME`` asks for; None (and a 404 naming the sources) if there is none."""
            feed = web.feed_for(query)
            if feed is None:
                names = ", ".join(web.feeds)
                self._send(HTTPStatus.NOT_FOUND, f"no source {query['source'][0]!r}; sources: {names}\n".encode(), "text/plain; charset=utf-8")
            return feed

        def snapshot(self, query: dict[str, list[str]]) -> None:
            feed = self._feed(query)
            if feed is None:
                return
            jpeg = feed.current_jpeg()
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain; charset=utf-8")
                return
            self._send(HTTPStatus.OK, jpeg, "image/jpeg")

        def _client_gone(self) -> bool:
            """Whether the viewer closed its end (readable with nothing to read) while no frames were sent."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
            except (OSError, ValueError):
                return True

        def stream(self, query: dict[str, list[str]]) -> None:
            feed = self._feed(query)
            if feed is None:
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command == "HEAD":
                return
            feed.add_viewer(1)
            try:
                seq = feed.first_seq()
                while True:
                    jpeg, seq = feed.next_jpeg(seq, timeout=1.0)  # on close: the last JPEG if this viewer lacks it, else None
                    if jpeg is None:
                        if web.stopping or self._client_gone():
                            return
                        continue
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                feed.add_viewer(-1)

    ROUTES: dict[str, Callable[[Handler, dict[str, list[str]]], None]] = {
        "/": Handler.page,
        "/index.html": Handler.page,
        "/stream.mjpg": Handler.stream,
        "/snapshot.jpg": Handler.snapshot,
        "/api/status": Handler.status,
        "/status": Handler.status,
        "/healthz": Handler.healthz,
        "/health": Handler.healthz,
        "/metrics": Handler.metrics,
    }
    return Handler
