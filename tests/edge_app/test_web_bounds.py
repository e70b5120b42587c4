"""The one web application under hostile connections, over real sockets on 127.0.0.1: 300 connections trickling a byte
every 2 s, 1,000 idle connections opened at once and held, oversized bodies. ``/healthz`` and the page keep answering
within 2 s, threads stay flat, and the process's file descriptors return to their baseline once those connections
close (each drill well under a minute)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.outputs import FrameResult
from edge_app.web import WebServer
from tests.edge_app.framekit import classify_frames
from tests.edge_app.helpers import wait_until
from tests.edge_app.test_web import fetch

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def frame(cifar10_val: Dataset, default_model: Path) -> tuple[np.ndarray, FrameResult]:
    return classify_frames(cifar10_val, default_model, [3], size=(640, 480))[0]


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def served(frame: tuple[np.ndarray, FrameResult], **kw) -> Iterator[WebServer]:
    """A web view fed 20 frames a second (so /healthz says 200), warmed up by one request of each kind."""
    stop = threading.Event()
    with WebServer(port=0, **kw) as web:
        def feed() -> None:
            while not stop.is_set():
                web.write(*frame)
                stop.wait(0.05)

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            assert fetch(web.url + "healthz")[0] == 200 and fetch(web.url)[0] == 200
            yield web
        finally:
            stop.set()
            t.join()


def answered_quickly(web: WebServer) -> float:
    """The slower of ``/healthz`` and ``/`` (the page), each over a fresh connection; both must be 200."""
    worst = 0.0
    for path in ("healthz", ""):
        t = time.monotonic()
        status, _, body = fetch(web.url + path)
        worst = max(worst, time.monotonic() - t)
        assert status == 200, (path, status, body[:200])
    return worst


def test_300_connections_trickling_a_byte_every_2_s_are_cut_off_and_never_block_health(frame) -> None:
    with served(frame, header_timeout_s=5.0) as web:
        base_fds, base_threads = fds(), threading.active_count()
        socks = [socket.create_connection(("127.0.0.1", web.port), timeout=5) for _ in range(300)]
        start = time.monotonic()
        slowest = 0.0
        try:
            head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
            sent = 0
            while time.monotonic() - start < 7.0:  # past the 5 s head deadline, however slowly they trickle
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(head[sent : sent + 1])
                sent += 1
                tick = time.monotonic() + 2.0
                while time.monotonic() < tick:
                    slowest = max(slowest, answered_quickly(web))
                    time.sleep(0.25)
            assert threading.active_count() <= base_threads + 2, "slow connections got threads"
            answers = []
            for s in socks:
                s.settimeout(3)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := s.recv(4096):
                        data += chunk
                answers.append(data)
            assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) == 300  # each one answered 408 and closed
            assert web.stats["timed_out"] == 300
        finally:
            for s in socks:
                s.close()
        assert slowest < 2.0, f"/healthz or / took {slowest:.2f} s under the trickle"
        assert wait_until(lambda: fds() <= base_fds, 5), f"{fds()} descriptors open, {base_fds} before"
        assert answered_quickly(web) < 2.0


def test_1000_idle_connections_opened_at_once_and_held_never_block_health(frame) -> None:
    with served(frame, max_connections=256) as web:
        base_fds, base_threads = fds(), threading.active_count()
        socks: list[socket.socket] = []
        try:
            for _ in range(1000):
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", web.port))
                socks.append(s)
            time.sleep(0.5)
            held_until = time.monotonic() + 4.0  # held, sending nothing, inside the head deadline
            slowest = 0.0
            while time.monotonic() < held_until:
                slowest = max(slowest, answered_quickly(web))
                time.sleep(0.25)
            assert slowest < 2.0, f"/healthz or / took {slowest:.2f} s with 1,000 idle connections held"
            assert threading.active_count() <= base_threads + 2
            assert web.stats["evicted"] >= 1000 - 256  # the oldest idle ones made room: the server holds at most 256
            assert fds() <= base_fds + 1000 + 256 + 8
        finally:
            for s in socks:
                s.close()
        assert wait_until(lambda: fds() <= base_fds, 5), f"{fds()} descriptors open, {base_fds} before"
        assert answered_quickly(web) < 2.0


def test_request_bodies_are_bounded_and_a_kept_alive_connection_gets_a_new_deadline(frame, tmp_path: Path) -> None:
    reloads: list[float] = []
    with served(frame, reload=lambda timeout: reloads.append(timeout) or {"ok": True}, header_timeout_s=1.0, review=tmp_path) as web:
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
            s.sendall(b"POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 1000)
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:  # chunked: counted as it arrives
            s.sendall(b"POST /api/review/label HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nX-Edge-App: 1\r\n"
                      b"Content-Type: application/json\r\n\r\n")
            for _ in range(20):
                with contextlib.suppress(OSError):
                    s.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
        assert reloads == []
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:  # keep-alive: the next head has its own deadline
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = b""
            while not first.endswith(b"\r\n\r\nok\n"):
                first += s.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 12")  # ... and never finishes it
            time.sleep(1.5)
            assert s.recv(4096).startswith(b"HTTP/1.1 408")


def test_a_request_body_that_stalls_is_cut_off(tmp_path: Path) -> None:
    """A change whose body stops arriving holds its request slot only ``body_timeout_s``, then 408."""
    from edge_app.web.app import create_app
    from edge_app.web.hosts import AllowedHosts
    from edge_app.web.server import HttpServer

    app = create_app(review=tmp_path, hosts=AllowedHosts("127.0.0.1"), body_timeout_s=1.0)
    server = HttpServer(app, "127.0.0.1", 0, what="the review page").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /api/review/label HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\nX-Edge-App: 1\r\n"
                      b"Content-Type: application/json\r\n\r\n{\"images\"")
            t = time.monotonic()
            assert s.recv(4096).startswith(b"HTTP/1.1 408")
            assert 0.8 < time.monotonic() - t < 3
    finally:
        server.stop()
