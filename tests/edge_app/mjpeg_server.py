"""A real MJPEG-over-HTTP camera stream on 127.0.0.1 for tests: start, stop, restart on the same port, stall.

It speaks what IP cameras speak (``multipart/x-mixed-replace`` JPEG parts), so OpenCV's FFmpeg
backend opens ``server.url`` exactly as it would open a network camera.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"frame"


class MJPEGServer:
    """Serves ``frames`` (BGR uint8) in a loop at ``fps`` to every client until stopped."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 30.0, port: int = 0) -> None:
        self.jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
        self.fps = fps
        self.port = port
        self.sending = threading.Event()  # cleared: connections stay open but no bytes flow (a stall)
        self.sending.set()
        self.connections_total = 0
        self._alive = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> MJPEGServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner._conns.add(self.connection)
                    owner.connections_total += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    i = 0
                    while owner._alive.is_set():
                        if not owner.sending.is_set():
                            time.sleep(0.01)
                            continue
                        jpeg = owner.jpegs[i % len(owner.jpegs)]
                        i += 1
                        head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(jpeg))
                        self.wfile.write(head + jpeg + b"\r\n")
                        time.sleep(1.0 / owner.fps)
                except OSError:
                    pass  # the client went away or the server was stopped
                finally:
                    with owner._lock:
                        owner._conns.discard(self.connection)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._alive.set()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection (the camera disappears)."""
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(2)

    def wait_for_connections(self, count: int, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active_connections == count:
                return True
            time.sleep(0.02)
        return self.active_connections == count
