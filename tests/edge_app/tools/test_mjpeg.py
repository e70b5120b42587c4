"""The MJPEG client (``edge_app.tools.mjpeg``) against a real HTTP server on 127.0.0.1 streaming real JPEGs
(CIFAR-10 validation photos at camera size): whole streams, plain and chunked, a part cut short, a bad boundary,
answers that are not MJPEG, a stalled stream, and a live camera-like stream read for a while and then left."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from edge_app.errors import ExitCode, OutputError
from edge_app.tools.mjpeg import MjpegClient, MjpegError, StreamBroken, watch
from tests.edge_app.mjpeg_server import MJPEGServer

pytestmark = pytest.mark.timeout(60)


@dataclass
class Reply:
    """What the server answers on one path: the status, the Content-Type, the body (sent as is), then a pause."""

    body: bytes
    content_type: str = "multipart/x-mixed-replace; boundary=frame"
    status: int = 200
    chunked: bool = False  # the body is already chunk-framed (what uvicorn sends); else the stream ends when the connection closes
    stall_s: float = 0.0  # hold the connection open without a byte after the body


def part(jpeg: bytes, boundary: bytes = b"frame", length: int | None = None) -> bytes:
    return b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (boundary, len(jpeg) if length is None else length, jpeg)


def chunk(data: bytes, declared: int | None = None) -> bytes:
    """One chunk of a chunked body; with ``declared`` larger than the data, one cut off (no CRLF after it)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if declared is None else b"%x\r\n%s" % (declared, data)


@pytest.fixture(scope="module")
def jpegs(cifar10_val) -> list[bytes]:
    """Five real photos as a camera would send them: 320x240 JPEGs of different sizes."""
    out = []
    for i in range(5):
        image = cv2.resize(cv2.cvtColor(cifar10_val.x[i * 97], cv2.COLOR_RGB2BGR), (320, 240), interpolation=cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(data.tobytes())
    assert len({len(j) for j in out}) == 5
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, Reply]]]:
    """A real threaded HTTP server; tests put a ``Reply`` for a path in the dict and request it."""
    replies: dict[str, Reply] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            reply = replies.get(self.path)
            if reply is None:
                self.send_error(404)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Transfer-Encoding" if reply.chunked else "Connection", "chunked" if reply.chunked else "close")
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            time.sleep(reply.stall_s)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", replies
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
def test_a_whole_stream_yields_every_jpeg_byte_for_byte(server, jpegs, chunked) -> None:
    base, replies = server
    body = b"".join(part(j) for j in jpegs) + b"--frame--\r\n"
    if chunked:  # parts split across chunks at odd places, as a server's writes fall
        pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        body = b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"
    replies[f"/whole-{chunked}?token=t"] = Reply(body, chunked=chunked)
    with MjpegClient(f"{base}/whole-{chunked}?token=t", timeout_s=5) as viewer:
        got = list(viewer)
    assert got == jpegs
    assert viewer.parts == 5 and viewer.size == sum(len(j) for j in jpegs) and viewer.seconds >= 0
    image = cv2.imdecode(np.frombuffer(got[2], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (240, 320, 3)
    count = watch(f"{base}/whole-{chunked}?token=t", timeout_s=5)
    assert (count.parts, count.size, count.broken) == (5, viewer.size, "")


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
def test_a_part_cut_short_breaks_the_stream_after_the_whole_ones(server, jpegs, chunked) -> None:
    base, replies = server
    cut = jpegs[2][: len(jpegs[2]) // 2]
    head = part(jpegs[0]) + part(jpegs[1])
    third = part(jpegs[2])[: -len(jpegs[2]) - 2] + cut  # the third part's header says the whole size; half arrives
    # until-close: the connection closes mid-part; chunked: the chunk itself is cut off (a server that died)
    body = head + third if not chunked else chunk(head) + chunk(third, declared=len(third) + 5000)
    replies[f"/cut-{chunked}"] = Reply(body, chunked=chunked)
    viewer = MjpegClient(f"{base}/cut-{chunked}", timeout_s=5).connect()
    got: list[bytes] = []
    with pytest.raises(StreamBroken, match=f"ended inside a part: {len(cut)} of {len(jpegs[2])} bytes"), viewer:
        got.extend(viewer)
    assert got == jpegs[:2] and viewer.parts == 2
    count = watch(f"{base}/cut-{chunked}", timeout_s=5)  # what a benchmark viewer reports: the whole parts, and why it stopped
    assert (count.parts, count.size) == (2, len(jpegs[0]) + len(jpegs[1]))
    assert count.broken == f"{base}/cut-{chunked} ended inside a part: {len(cut)} of {len(jpegs[2])} bytes"


def test_a_bad_boundary_is_an_error_not_a_silent_empty_stream(server, jpegs) -> None:
    base, replies = server
    replies["/other-boundary"] = Reply(b"".join(part(j, boundary=b"other") for j in jpegs))  # the header says "frame"
    with MjpegClient(f"{base}/other-boundary", timeout_s=5) as viewer, pytest.raises(MjpegError) as info:
        next(iter(viewer))
    assert not isinstance(info.value, StreamBroken)
    assert str(info.value) == f"{base}/other-boundary: expected the boundary '--frame', got '--other'"
    # a good part, then garbage where the next boundary belongs
    replies["/garbage"] = Reply(part(jpegs[0]) + b"Content-Length: 12\r\n\r\n" + part(jpegs[1]))
    viewer = MjpegClient(f"{base}/garbage", timeout_s=5)
    with pytest.raises(MjpegError, match="expected the boundary '--frame', got 'Content-Length: 12'"), viewer:
        for _ in viewer:
            pass
    assert viewer.parts == 1
    with pytest.raises(MjpegError, match="expected the boundary"):
        watch(f"{base}/garbage", timeout_s=5)  # a protocol error is not a stream that broke off: watch() raises it


def test_parts_without_a_size_or_not_jpeg_are_refused(server, jpegs) -> None:
    base, replies = server
    replies["/no-length"] = Reply(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpegs[0] + b"\r\n")
    replies["/png"] = Reply(b"--frame\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG\r\n")
    replies["/bad-header"] = Reply(b"--frame\r\nContent-Length 12\r\n\r\n")
    for path, message in (("/no-length", r"without a usable Content-Length \(none\)"), ("/png", "a part of type 'image/png'"), ("/bad-header", "without ':'")):
        with MjpegClient(base + path, timeout_s=5) as viewer, pytest.raises(MjpegError, match=message):
            next(iter(viewer))


def test_answers_that_are_not_mjpeg_fail_at_connect_with_one_line(server) -> None:
    base, replies = server
    replies["/text"] = Reply(b"hello", content_type="text/plain")
    replies["/no-boundary"] = Reply(b"--frame\r\n", content_type="multipart/x-mixed-replace")
    replies["/forbidden"] = Reply(b"", status=401)
    for path, answer in (("/text", "200 OK (text/plain)"), ("/no-boundary", "200 OK (multipart/x-mixed-replace)"), ("/forbidden", "401 Unauthorized"),
                         ("/missing", "404 Not Found")):
        with pytest.raises(MjpegError) as info:
            MjpegClient(base + path, timeout_s=5).connect()
        assert str(info.value).startswith(f"{base}{path} answered {answer}") and "not an MJPEG stream" in str(info.value)
        assert isinstance(info.value, OutputError) and info.value.exit_code == ExitCode.OUTPUT and "\n" not in str(info.value)


def test_nobody_serving_and_a_bad_address_are_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MjpegError, match=f"cannot watch http://127.0.0.1:{port}/stream.mjpg: ConnectionRefusedError"):
        watch(f"http://127.0.0.1:{port}/stream.mjpg", timeout_s=5)
    with pytest.raises(MjpegError, match="an MJPEG stream is an http://HOST:PORT/PATH address"):
        MjpegClient("rtsp://127.0.0.1/stream")


def test_a_stalled_stream_times_out(server, jpegs) -> None:
    base, replies = server
    replies["/stall"] = Reply(part(jpegs[0]), stall_s=5.0)
    t = time.monotonic()
    count = watch(f"{base}/stall", timeout_s=0.4)
    elapsed = time.monotonic() - t
    assert count.parts == 1 and count.broken == f"{base}/stall sent nothing within 0.4 s"
    assert elapsed < 3.0  # the timeout, not the 5 s stall


def test_a_live_stream_is_read_until_enough_or_stopped(jpegs) -> None:
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
    camera = MJPEGServer(frames, fps=50).start()  # the tests' camera: streams in a loop until stopped
    try:
        count = watch(camera.url, timeout_s=5, max_parts=12)
        assert count.parts == 12 and count.broken == "" and count.seconds > 0.1  # 12 parts at 50 a second
        stop = threading.Event()
        result: list = []
        reader = threading.Thread(target=lambda: result.append(watch(camera.url, timeout_s=5, stop=stop)))
        reader.start()
        time.sleep(0.5)
        stop.set()
        reader.join(5)
        assert not reader.is_alive() and 3 <= result[0].parts <= 40
        with MjpegClient(camera.url, timeout_s=5) as viewer:  # the bytes are the server's own JPEGs, in order
            stream = iter(viewer)
            first = next(stream)
            start = camera.jpegs.index(first)
            assert [next(stream) for _ in range(6)] == [camera.jpegs[(start + k) % 5] for k in range(1, 7)]
            camera.stop()  # the camera goes away while watched: the stream ends or breaks off at once, never hangs
            t = time.monotonic()
            with contextlib.suppress(StreamBroken):
                for _ in stream:
                    pass
            assert time.monotonic() - t < 3.0
    finally:
        camera.stop()
