"""The live view: ``WebServer`` (a sink of the frame loop, one ``Feed`` per source, and the lifecycle of the one web
application on ``--http``) and its routes: ``/`` (the page; with several sources an overview of all of them, and each
one's own page at ``/?source=NAME``), ``/stream.mjpg`` (MJPEG) and ``/snapshot.jpg`` (the current annotated frame).

The MJPEG stream keeps one design: each feed's encoder thread makes one JPEG per frame for all viewers, only while
someone watches (``feeds.Feed``); each viewer is a coroutine on the server's event loop that awaits the next shared
JPEG (woken thread-safely by the encoder) and sends it, skipping frames it was too slow for. A viewer that stops
reading is dropped by the server's send deadline (``client_timeout_s``) without affecting anyone else. ``close()``
first encodes the newest frame if no viewer has it yet and lets every viewer send it, then ends the streams: a short
run still reaches the viewers that watched it.

The status, health, reload and metrics routes are in ``api.py``, the review page in ``review.py``; ``app.create_app``
puts them together behind the request checks of ``security.py``, served by ``server.HttpServer`` (uvicorn).
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import numpy as np
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from edge_app.errors import ConfigError
from edge_app.outputs import FrameResult
from edge_app.web.app import DEFAULT_MAX_ACTIVE, create_app
from edge_app.web.feeds import HAVE_PROMETHEUS, Feed, Metrics
from edge_app.web.hosts import AllowedHosts, warn_without_token
from edge_app.web.security import Message, Receive, Scope, Send
from edge_app.web.server import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, Guard, HttpServer

if TYPE_CHECKING:
    from edge_app.deploy import ModelDesk
    from edge_app.doctor import RunningModel

log = logging.getLogger("edge_app.web")  # the name the live view has always logged under

STATIC = Path(__file__).parent / "static"
BOUNDARY = "edgeappframe"
HOST_HINT = "; add it to http_hosts (--http-hosts NAME) to serve it"
NO_STORE = {"Cache-Control": "no-store"}


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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        title: str = "edge-app",
        sources: Sequence[str] = (),
        host_names: Sequence[str] = (),
        review: Path | None = None,
        labels: Callable[[], Sequence[str]] | Sequence[str] = (),
        models: ModelDesk | None = None,
        doctor: RunningModel | None = None,
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
        self.guard = Guard(header_timeout_s=header_timeout_s, write_timeout_s=client_timeout_s, max_connections=max_connections)
        self.review = review
        self.labels = labels
        self.models = models  # the models page (/models): deploy, rollback, retrain
        self.doctor = doctor  # the running model's input size and features for the review page's dataset doctor
        self.title = title
        # one feed per source (the newest frame, its shared JPEG, its viewers); write() feeds the first
        self.feeds: dict[str, Feed] = {name: Feed(self, name) for name in (sources or ("",))}
        self._first = next(iter(self.feeds.values()))
        self._closing = threading.Event()  # close() began: the encoder does its last frame and ends
        self._stopping = threading.Event()  # the encoder is done: viewers send what they have not sent yet and end
        self._server: HttpServer | None = None
        self._encoders: list[threading.Thread] = []
        self.active = 0  # requests being served (streams included), as ActiveLimit counts them
        self.metrics = Metrics(self._safe_status, lambda: self.viewers) if HAVE_PROMETHEUS else None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else f"[{self.host}]" if ":" in self.host else self.host  # noqa: S104
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        if self._server is not None:
            return self
        app = create_app(live=self, review=self.review, labels=self.labels, models=self.models, token=self.token, hosts=self.hosts,
                         max_active=self.max_active, input_size=self.doctor.input_size if self.doctor else None,
                         features=self.doctor.features if self.doctor else None)
        self._closing.clear()
        self._stopping.clear()
        self._server = HttpServer(app, self.host, self.port, what="the web view", guard=self.guard).start()
        self.port = self._server.port
        if self.metrics is None:
            log.warning("prometheus-client is not installed: /metrics answers 501 (pip install prometheus-client)")
        self._encoders = [threading.Thread(target=feed.encode_loop, name=f"web-encoder {feed.name}".rstrip(), daemon=True)
                          for feed in self.feeds.values()]
        for t in self._encoders:
            t.start()
        log.info("web view on %s%s%s", self.url, " (token required)" if self.token else "", f"; review page on {self.url}review" if self.review else "")
        if self.models is not None:
            log.info("models page on %smodels", self.url)
        warn_without_token(log, "the web view", self.host, self.token, "set http_token (--http-token) or serve 127.0.0.1 only")
        return self

    def close(self) -> None:
        """Stop: the newest frame is encoded and sent to the viewers still watching, then their streams end."""
        self._closing.set()
        for feed in self.feeds.values():
            feed.wake()
        for t in self._encoders:
            t.join(timeout=5)
        self._encoders.clear()
        self._stopping.set()
        for feed in self.feeds.values():
            feed.wake_viewers()
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def stats(self) -> dict[str, int]:
        """What the connection guard refused (``server.Guard``): timed-out heads, evicted idle connections, ..."""
        return self.guard.stats

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

    def feed(self, name: str) -> Feed:
        """The sink of source ``name`` (one of ``sources``)."""
        return self.feeds[name]

    def feed_for(self, query: dict[str, list[str]]) -> Feed | None:
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

    def status_json(self, feed: Feed | None = None) -> dict[str, Any]:
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

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()




class MjpegStream:
    """The ``multipart/x-mixed-replace`` response of one viewer of ``feed`` (an ASGI app for one request)."""

    def __init__(self, web: WebServer, feed: Feed) -> None:
        self.web = web
        self.feed = feed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", f"multipart/x-mixed-replace; boundary={BOUNDARY}".encode()), (b"cache-control", b"no-store"),
            (b"connection", b"close")]})  # fmt: skip
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        gone = asyncio.Event()

        async def watch() -> None:  # the client closed its end (or the server dropped it): the stream ends
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        feed = self.feed
        feed.add_viewer(1)
        try:
            seq = feed.first_seq()
            while not gone.is_set():
                jpeg, seq = await feed.next_jpeg_async(seq, timeout=1.0)  # on close: the last JPEG if this viewer lacks it, else None
                if jpeg is None:
                    if self.web.stopping:
                        break
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": head + jpeg + b"\r\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            feed.add_viewer(-1)
            watcher.cancel()


class StreamEndpoint:
    """``/stream.mjpg[?source=NAME]``: the MJPEG stream of that source (the first without one), or 404 naming the sources."""

    def __init__(self, web: WebServer) -> None:
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        feed = self.web.feed_for(_query(request))
        if feed is None:
            await _no_source(self.web, request)(scope, receive, send)
            return
        await MjpegStream(self.web, feed)(scope, receive, send)


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query)


def _no_source(web: WebServer, request: Request) -> Response:
    return PlainTextResponse(f"no source {request.query_params.get('source')!r}; sources: {', '.join(web.feeds)}\n", 404, headers=NO_STORE)


def live_routes(web: WebServer) -> list[Route]:
    """``/``, ``/index.html``, ``/stream.mjpg``, ``/snapshot.jpg`` of ``web``."""
    live_page = (STATIC / "live.html").read_text()
    overview_page = (STATIC / "overview.html").read_text()

    async def page(request: Request) -> Response:
        if web.several and "source" not in request.query_params:
            figures = "".join(f'<figure data-source="{html.escape(n)}"><a><img alt="{html.escape(n)}"></a>'
                              f"<figcaption>{html.escape(n)}</figcaption></figure>" for n in web.feeds)
            body = overview_page.replace("__TITLE__", html.escape(web.title)).replace("__FIGURES__", figures)
            return HTMLResponse(body, headers=NO_STORE)
        feed = web.feed_for(_query(request))
        if feed is None:
            return _no_source(web, request)
        title = f"{web.title} {feed.name}" if web.several else web.title
        return HTMLResponse(live_page.replace("__TITLE__", html.escape(title)), headers=NO_STORE)

    async def snapshot(request: Request) -> Response:
        feed = web.feed_for(_query(request))
        if feed is None:
            return _no_source(web, request)
        jpeg = await feed.snapshot_async()
        if jpeg is None:
            return PlainTextResponse("no frame yet\n", 503, headers=NO_STORE)
        return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)

    return [Route("/", page), Route("/index.html", page), Route("/stream.mjpg", StreamEndpoint(web), methods=["GET"]), Route("/snapshot.jpg", snapshot)]
