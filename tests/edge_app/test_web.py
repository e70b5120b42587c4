"""The web view over real sockets on 127.0.0.1, fed real frames (CIFAR-10 validation images at camera
size) with the shipped model's real results: every route, the token, several MJPEG viewers at once,
a viewer that stops reading, health going stale, bind failures, and a headless Chromium screenshot."""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from converter.data.datasets import Dataset
from edge_app.errors import ConfigError, ExitCode, OutputError
from edge_app.outputs import FrameResult
from edge_app.tools.mjpeg import read_parts
from edge_app.web import WebServer
from tests.edge_app.framekit import classify_frames
from tests.edge_app.helpers import wait_until

pytestmark = pytest.mark.timeout(90)

STATUS = {"model": "cifar10", "source": "test.avi", "fps": 24.5, "inference_ms": 1.5, "frames": 7, "dropped": 3, "reconnects": 2, "uptime_s": 12.5}


@pytest.fixture(scope="module")
def frames(cifar10_val: Dataset, default_model: Path) -> list[tuple[np.ndarray, FrameResult]]:
    """Eight different real images (one per class spread) at 640x480 with their real results."""
    picks = list(range(0, len(cifar10_val), len(cifar10_val) // 8))[:8]
    return classify_frames(cifar10_val, default_model, picks, size=(640, 480))


def request(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> http.client.HTTPResponse:
    """Send a request over a fresh connection; the response is left open for reading (streams)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
    return conn.getresponse()


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Message, bytes]:
    """Status, headers (names case-insensitive, as HTTP has them) and body."""
    resp = request(url, headers, method)
    with resp:
        return resp.status, resp.headers, resp.read()


def identify(jpeg: bytes, frames: list[tuple[np.ndarray, FrameResult]]) -> int:
    """Which written frame a streamed JPEG shows, judged where the overlay never draws (right middle)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    h, w = frames[0][0].shape[:2]
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    region = (slice(h // 3, 2 * h // 3), slice(w // 2, w))
    errors = [np.abs(image[region].astype(int) - f[region].astype(int)).mean() for f, _ in frames]
    best = int(np.argmin(errors))
    assert errors[best] < 6, f"streamed image matches no written frame (error {errors[best]:.1f})"
    return best


@contextmanager
def feeding(server: WebServer, frames: list[tuple[np.ndarray, FrameResult]], fps: float = 30.0) -> Iterator[list[float]]:
    """Write the frames in a loop from another thread (like the frame loop); yields write() durations."""
    durations: list[float] = []
    stop = threading.Event()

    def run() -> None:
        i = 0
        while not stop.is_set():
            frame, result = frames[i % len(frames)]
            t = time.perf_counter()
            server.write(frame, result)
            durations.append(time.perf_counter() - t)
            i += 1
            stop.wait(1.0 / fps)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield durations
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def server() -> Iterator[WebServer]:
    web = WebServer(port=0, status=lambda: dict(STATUS), max_fps=15).start()
    yield web
    web.close()


def test_every_route(server: WebServer, frames) -> None:
    base = server.url
    assert server.port > 0 and base == f"http://127.0.0.1:{server.port}/"
    code, _, body = fetch(base + "healthz")
    assert (code, body) == (503, b"no frames yet\n")
    code, _, body = fetch(base + "api/status")
    assert code == 200 and json.loads(body)["last"] is None

    for frame, result in frames:
        server.write(frame, result)
    assert server.encoded == 0  # nobody watches: write() stored the frame and encoded nothing
    last_frame, last = frames[-1]

    assert fetch(base + "healthz")[::2] == (200, b"ok\n")
    assert fetch(base + "health")[0] == 200
    code, headers, body = fetch(base)
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<img id="stream"' in page and "stream.mjpg" in page and "api/status" in page

    code, headers, body = fetch(base + "api/status")
    status = json.loads(body)
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert {k: status[k] for k in STATUS} == STATUS
    assert status["last"] == last.to_json_dict()
    assert status["last"]["top"][0]["label"] == last.top[0].label
    assert 0 <= status["last_frame_age_s"] < 5 and status["viewers"] == 0
    assert json.loads(fetch(base + "status")[2])["last"]["frame"] == last.index

    code, headers, body = fetch(base + "snapshot.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    assert identify(body, frames) == len(frames) - 1
    assert server.encoded == 1

    code, headers, body = fetch(base + "metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=")
    samples = {s.name: s.value for fam in text_string_to_metric_families(body.decode()) for s in fam.samples if not s.labels or "le" not in s.labels}
    assert samples["edge_app_frames_total"] == len(frames)
    assert samples["edge_app_dropped_frames_total"] == STATUS["dropped"]
    assert samples["edge_app_source_reconnects_total"] == STATUS["reconnects"]
    assert samples["edge_app_uptime_seconds"] == STATUS["uptime_s"]
    assert samples["edge_app_inference_latency_seconds_count"] == len(frames)
    assert samples["edge_app_inference_latency_seconds_sum"] == pytest.approx(sum(r.latency_ms["invoke"] for _, r in frames) / 1e3)
    assert samples["edge_app_fps"] == pytest.approx(last.fps)
    assert samples["edge_app_stream_clients"] == 0

    code, _, body = fetch(base + "nope")
    assert code == 404 and b"/stream.mjpg" in body
    assert fetch(base + "healthz", method="HEAD")[::2] == (200, b"")
    assert last_frame is frames[-1][0]


def test_token_guards_everything_but_health(frames) -> None:
    token = secrets.token_urlsafe(12)
    with WebServer(port=0, token=token, status=lambda: dict(STATUS)) as web:
        frame, result = frames[0]
        web.write(frame, result)
        base = web.url
        for route in ("", "api/status", "metrics", "snapshot.jpg", "stream.mjpg", "status"):
            code, headers, body = fetch(base + route)
            assert code == 401, route
            assert headers["WWW-Authenticate"].startswith("Bearer") and b"?token=" in body
            assert fetch(base + route, {"Authorization": "Bearer wrong"})[0] == 401
            assert fetch(base + route + "?token=wrong")[0] == 401
        for route in ("", "api/status", "metrics", "snapshot.jpg"):
            assert fetch(base + route, {"Authorization": f"Bearer {token}"})[0] == 200, route
            assert fetch(base + route + f"?token={token}")[0] == 200, route
        assert fetch(base + "healthz")[0] == 200  # load balancers and systemd checks need no token
        with request(base + f"stream.mjpg?token={token}") as resp:  # what the page's <img> does
            assert identify(next(read_parts(resp)), frames) == 0
    with pytest.raises(ConfigError, match="token is empty"):
        WebServer(token=" " * 3)


def test_three_viewers_share_one_encoding(server: WebServer, frames) -> None:
    received: list[list[int]] = [[], [], []]
    errors: list[BaseException] = []

    def view(n: int) -> None:
        try:
            with request(server.url + "stream.mjpg") as resp:
                for jpeg in read_parts(resp):
                    received[n].append(identify(jpeg, frames))
                    if len(received[n]) >= 15:
                        return
        except BaseException as exc:
            errors.append(exc)

    with feeding(server, frames, fps=30):
        t0 = time.monotonic()
        viewers = [threading.Thread(target=view, args=(n,)) for n in range(3)]
        for v in viewers:
            v.start()
        assert wait_until(lambda: server.viewers == 3, 5)
        for v in viewers:
            v.join(timeout=20)
        elapsed = time.monotonic() - t0
    assert not errors, errors
    for got in received:
        assert len(got) == 15
        assert len(set(got)) >= 4  # the stream moves on: distinct frames, not one image repeated
    # Encoded once for everyone, at most max_fps: far fewer JPEGs than the 45 parts sent.
    assert server.encoded <= server.max_fps * elapsed + 2
    assert server.encoded < sum(len(g) for g in received)
    assert wait_until(lambda: server.viewers == 0, 5)


def test_a_viewer_that_stops_reading_never_slows_write(frames) -> None:
    big = [(cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_CUBIC), r) for f, r in frames]
    with WebServer(port=0, max_fps=30, jpeg_quality=95, client_timeout_s=1.5) as web:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", web.port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ... and never reads a byte
        try:
            with feeding(web, big, fps=30) as durations:
                assert wait_until(lambda: web.viewers == 1, 5)
                with request(web.url + "stream.mjpg") as resp:  # a healthy viewer alongside
                    parts = read_parts(resp)
                    got = [identify(next(parts), frames) for _ in range(20)]
                assert len(set(got)) >= 4
                # The stalled viewer's socket timed out and was dropped; the healthy one has gone too.
                assert wait_until(lambda: web.viewers == 0, 10)
                assert web.encoded > 20
            assert len(durations) > 30
            # Blocking on the stalled socket would take client_timeout_s (1.5 s); write() only stores a reference.
            assert float(np.median(durations)) < 0.002 and max(durations) < 0.1, f"write() took up to {max(durations) * 1e3:.1f} ms"
        finally:
            stalled.close()


def test_health_goes_503_when_frames_stop(frames) -> None:
    with WebServer(port=0, health_timeout_s=0.5) as web:
        with feeding(web, frames, fps=20):
            time.sleep(0.3)
            assert fetch(web.url + "healthz")[0] == 200
        assert fetch(web.url + "healthz")[0] == 200  # the last frame is still fresh
        time.sleep(0.8)
        code, _, body = fetch(web.url + "healthz")
        assert code == 503 and body.decode().startswith("no frame for ")
        web.write(*frames[0])
        assert fetch(web.url + "healthz")[0] == 200


def test_bind_failure_and_bad_settings_are_one_line_errors() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OutputError) as info:
            WebServer(port=port).start()
    message = str(info.value)
    assert message.startswith(f"cannot serve the web view on 127.0.0.1:{port}: ") and "in use" in message and "\n" not in message
    assert info.value.exit_code == ExitCode.OUTPUT
    with pytest.raises(ConfigError, match="max_fps"):
        WebServer(max_fps=0)
    with pytest.raises(ConfigError, match="JPEG quality"):
        WebServer(jpeg_quality=0)


def test_close_ends_streams_and_frees_the_port(frames) -> None:
    web = WebServer(port=0).start()
    web.write(*frames[0])
    resp = request(web.url + "stream.mjpg")
    parts = read_parts(resp)
    next(parts)
    t = time.monotonic()
    web.close()
    assert time.monotonic() - t < 5
    assert list(parts) == []  # the viewer sees the end of the stream
    resp.close()
    with socket.socket() as again:  # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", web.port))


def short_run(frames: list[tuple[np.ndarray, FrameResult]], held_back: bool) -> tuple[list[int], int]:
    """One viewer; frame 1 written right before close() (after frame 0 was sent, with ``held_back``): what it saw, JPEGs made."""
    web = WebServer(port=0, max_fps=2).start()
    resp = request(web.url + "stream.mjpg")
    jpegs: list[bytes] = []

    def read() -> None:
        for jpeg in read_parts(resp):
            jpegs.append(jpeg)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: web.viewers == 1, 5)
        if held_back:
            web.write(*frames[0])
            assert wait_until(lambda: len(jpegs) == 1, 5)  # sent: the next frame waits 0.5 s for max_fps
        web.write(*frames[1])
        t = time.monotonic()
        web.close()
        assert time.monotonic() - t < 2
        reader.join(5)
        assert not reader.is_alive(), "the stream did not end after close()"
    finally:
        web.close()
        resp.close()
    return [identify(j, frames) for j in jpegs], web.encoded


def test_close_first_sends_the_newest_frame_to_the_viewers(frames) -> None:
    """A run that ends right after its last write (a short video): the viewers still get that frame, whether the
    encoder had not woken up yet or was holding it back for ``max_fps``; then their streams end."""
    assert short_run(frames, held_back=False) == ([1], 1)
    assert short_run(frames, held_back=True) == ([0, 1], 2)


def test_status_errors_do_not_break_the_page(frames) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("app not ready")

    with WebServer(port=0, status=broken) as web:
        web.write(*frames[0])
        code, _, body = fetch(web.url + "api/status")
        assert code == 200 and json.loads(body)["status_error"] == "RuntimeError: app not ready"
        assert fetch(web.url + "metrics")[0] == 200


def forged(port: int, method: str, path: str, host: str, origin: str | None = None) -> tuple[int, bytes]:
    """A request to 127.0.0.1:``port`` whose ``Host`` (and ``Origin``) say ``host``: what a browser sends for a page
    whose name was re-resolved to this device (DNS rebinding)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host, **({"Origin": origin} if origin else {})}
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        return s.recv(4096)


def test_a_forged_host_cannot_reload_the_model_or_read_anything(frames) -> None:
    """Without a token, ``POST /api/reload`` with ``Host`` and ``Origin`` both ``evil.example:PORT`` passed the
    cross-site check (they agree) and reloaded the model: now every request's Host must be one of this server's."""
    reloads: list[float] = []

    def reload(timeout: float) -> dict[str, Any]:
        reloads.append(timeout)
        return {"ok": True, "model": "cifar10@new"}

    with WebServer(port=0, status=lambda: dict(STATUS), reload=reload) as web:
        web.write(*frames[0])
        port, evil = web.port, f"evil.example:{web.port}"
        code, body = forged(port, "POST", "/api/reload", evil, f"http://{evil}")
        assert (code, body) == (400, b"misdirected request: 'evil.example' is not a name of this server; "
                                     b"add it to http_hosts (--http-hosts NAME) to serve it\n")
        assert reloads == []
        for path in ("/", "/api/status", "/snapshot.jpg", "/stream.mjpg", "/metrics", "/healthz", "/nope"):
            assert forged(port, "GET", path, evil)[0] == 400, path
        assert forged(port, "HEAD", "/", evil)[0] == 400
        assert forged(port, "PUT", "/api/reload", evil)[0] == 400  # every method, before any handler
        for host in ("evil.example", "127.0.0.1.evil.example", "localhost.", "[::2]:80", "127.0.0.2", "10.0.0.1"):
            assert forged(port, "GET", "/", host)[0] == 400, host
        assert raw(port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")  # no Host at all
        two = raw(port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n".encode())
        assert two.startswith(b"HTTP/1.1 400") and b"multiple Host" in two
        assert reloads == []
        # this server's own names still work, for reading and for changes from its own page
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "127.0.0.1"):
            code, body = forged(port, "GET", "/", host)
            assert code == 200 and b"<img id=\"stream\"" in body, host
            assert forged(port, "GET", "/api/status", host)[0] == 200, host
        code, body = forged(port, "POST", "/api/reload", f"localhost:{port}", f"http://localhost:{port}")
        assert code == 200 and json.loads(body)["model"] == "cifar10@new" and reloads == [30.0]
        assert forged(port, "POST", "/api/reload", f"127.0.0.1:{port}", f"http://localhost:{port}")[0] == 403  # still cross-site


def test_every_interface_answers_the_machine_and_configured_names_and_warns_without_a_token(caplog: pytest.LogCaptureFixture) -> None:
    name = socket.gethostname()
    with caplog.at_level(logging.INFO, logger="edge_app.web"), WebServer(host="0.0.0.0", port=0, host_names=["cam.example", "*.lab.example"]) as web:  # noqa: S104
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "edge_app.web"]
        assert warnings == ["the web view is served on every interface without a token: anyone who can reach this device can use it; "
                            "set http_token (--http-token) or serve 127.0.0.1 only"]
        for host in (f"127.0.0.1:{web.port}", f"localhost:{web.port}", f"{name}:{web.port}", f"{name.split('.')[0]}.local",
                     f"cam.example:{web.port}", "door.lab.example"):
            assert forged(web.port, "GET", "/api/status", host)[0] == 200, host
        for host in ("evil.example", "lab.example", "cam.example.evil.example", "10.255.255.1"):
            assert forged(web.port, "GET", "/api/status", host)[0] == 400, host
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_app.web"):
        WebServer(host="0.0.0.0", port=0, token=secrets.token_urlsafe(8)).start().close()  # noqa: S104
        WebServer(port=0).start().close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "edge_app.web"]
    with pytest.raises(ConfigError, match="bad host name"):
        WebServer(host_names=["evil.*"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_browser_shows_the_live_stream_and_top_k(tmp_path: Path, frames) -> None:
    shot = tmp_path / "page.png"
    token = secrets.token_urlsafe(8)
    with WebServer(port=0, token=token, status=lambda: dict(STATUS)) as web, feeding(web, frames, fps=15):
        assert CHROMIUM is not None
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
               "--window-size=800,600", "--timeout=6000", f"{web.url}?token={token}"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert shot.exists(), out.stderr[-2000:]
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (600, 800)
    # The stream fills the left column: a real picture (varied pixels), not the dark page background.
    view = page[40:300, 40:440]
    assert view.std() > 20 and np.abs(view.astype(int) - 0x11).mean() > 30
    # Its overlay's green top-1 bar is drawn into the streamed frame (BGR (60, 200, 80), JPEG-softened).
    green = (np.abs(view.astype(int) - np.array([60, 200, 80])).sum(axis=2) < 60).sum()
    assert green > 30
    # The side panel was filled by the page's script from /api/status: text and the #3c8 bar.
    side = page[:, 512:]
    assert (np.abs(side.astype(int) - np.array([0x88, 0xCC, 0x33])).sum(axis=2) < 40).sum() > 30
    assert (side.min(axis=2) > 200).sum() > 50  # light text on the dark background


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_browser_overview_shows_every_source(tmp_path: Path, frames) -> None:
    """Several sources: the page at / lays out each one's own stream, captioned from /api/status by its script."""
    shot = tmp_path / "overview.png"
    bright = [(np.full_like(f, 230), r) for f, r in frames]  # the right source: a near-white picture, the left real photos
    status = {**STATUS, "sources": [{"name": "left", "label": "cat", "score": 0.9, "fps": 15.0, "connected": True},
                                    {"name": "right", "label": None, "score": None, "fps": 0.0, "connected": False}]}
    with WebServer(port=0, status=lambda: dict(status), sources=["left", "right"]) as web, \
            feeding(web.feed("left"), frames, fps=15), feeding(web.feed("right"), bright, fps=15):  # type: ignore[arg-type]
        assert CHROMIUM is not None
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
               "--window-size=800,600", "--timeout=6000", web.url]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert shot.exists(), out.stderr[-2000:]
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (600, 800)
    left, right = page[120:300, 40:360].astype(int), page[120:300, 440:760].astype(int)  # two columns of the grid
    assert left.std() > 20 and np.abs(left - 0x11).mean() > 30  # a real picture, not the page background
    assert right.mean() > 180 and right.std() < left.std()  # the other source's near-white frames
    captions = page[300:420]
    assert (captions.min(axis=2) > 150).sum() > 50  # caption text filled in by the script
