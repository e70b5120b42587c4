"""The web server under hostile load, for real: 200 slowloris sockets on loopback, then more viewers than it serves.

Threads stay bounded, slow request heads are cut off as a whole, and ``/healthz`` keeps answering throughout.
(``test_web_bounds.py`` has the larger drills: 300 trickling and 1,000 idle connections, descriptors afterwards.)"""

from __future__ import annotations

import contextlib
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
from tests.edge_app.test_web import fetch, request

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def frame(cifar10_val: Dataset, default_model: Path) -> tuple[np.ndarray, FrameResult]:
    return classify_frames(cifar10_val, default_model, [7], size=(640, 480))[0]


@contextlib.contextmanager
def feeding(web: WebServer, frame: tuple[np.ndarray, FrameResult]) -> Iterator[None]:
    """Write the frame to the server 20 times a second (the frame loop), so /healthz has a reason to say 200."""
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            web.write(*frame)
            stop.wait(0.05)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def slowloris(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that each send the start of a request head and never finish it."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks


def test_200_slowloris_sockets_cost_no_threads_are_cut_off_and_healthz_answers(frame) -> None:
    with WebServer(port=0, header_timeout_s=2.0) as web, feeding(web, frame):
        threads_before = threading.active_count()
        socks = slowloris(web.port, 200)
        try:
            trickle_until = time.monotonic() + 1.5
            while time.monotonic() < trickle_until:  # keep every one of them "alive", a byte at a time
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b"a")
                t = time.monotonic()
                status, _, body = fetch(f"http://127.0.0.1:{web.port}/healthz")
                assert status == 200 and body == b"ok\n"
                assert time.monotonic() - t < 1.0, "healthz was slow under the slowloris load"
                time.sleep(0.3)
            assert threading.active_count() <= threads_before + 2, "slow sockets got threads"
            # past the head timeout, however slowly they trickle, every one of them is answered 408 and closed
            time.sleep(2.0)
            closed = 0
            for s in socks:
                s.settimeout(2)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := s.recv(4096):
                        data += chunk
                closed += data.startswith(b"HTTP/1.1 408")
            assert closed == 200 and web.stats["timed_out"] == 200
        finally:
            for s in socks:
                s.close()
        status, _, _ = fetch(f"http://127.0.0.1:{web.port}/api/status")
        assert status == 200  # the server serves normally afterwards


def test_beyond_max_active_requests_get_503_but_health_is_always_served(frame) -> None:
    with WebServer(port=0, max_active=3) as web, feeding(web, frame):
        viewers = [request(f"http://127.0.0.1:{web.port}/stream.mjpg") for _ in range(3)]
        try:
            assert all(v.status == 200 for v in viewers)
            deadline = time.monotonic() + 5
            while web.active < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            status, _, body = fetch(f"http://127.0.0.1:{web.port}/api/status")
            assert status == 503 and b"busy" in body
            assert fetch(f"http://127.0.0.1:{web.port}/healthz")[0] == 200
        finally:
            for v in viewers:
                v.close()
        deadline = time.monotonic() + 10
        while fetch(f"http://127.0.0.1:{web.port}/api/status")[0] != 200:
            assert time.monotonic() < deadline, "viewer slots were not given back"
            time.sleep(0.2)


def test_an_oversized_request_head_is_refused(frame) -> None:
    with WebServer(port=0) as web, socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000)
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 431")
