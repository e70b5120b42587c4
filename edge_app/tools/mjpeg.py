"""The one MJPEG client of the tools and the tests: connect to a ``multipart/x-mixed-replace`` stream
(the web view's ``/stream.mjpg``, an IP camera), read its JPEG parts as they arrive, count them and their
bytes, with a socket timeout on the connection and on every read.

Each part is what the web view (``edge_app.web.live``) and IP cameras send::

    --BOUNDARY
    Content-Type: image/jpeg
    Content-Length: N

    <N bytes of JPEG>

Blank lines between parts are skipped and ``--BOUNDARY--`` ends the stream, as RFC 2046 has it. Anything
else where a boundary belongs, a part without a usable ``Content-Length`` or one that is not a JPEG is an
``MjpegError``; a stream that breaks off inside a part, resets or sends nothing for ``timeout_s`` is a
``StreamBroken`` (an ``MjpegError`` too). ``watch`` counts a stream to its end, reporting what arrived
when it breaks off; ``MjpegClient`` yields the JPEGs themselves.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from edge_app.errors import OutputError

MAX_LINE = 8192  # a boundary or header line; longer is not MJPEG


class MjpegError(OutputError):
    """Not an MJPEG stream: an HTTP error, another content type, a bad boundary, a part without a usable Content-Length."""


class StreamBroken(MjpegError):
    """The stream broke off: it ended inside a part, the connection failed, or nothing arrived within the timeout."""


@dataclass
class StreamCount:
    parts: int  # JPEG parts received whole
    size: int  # their bytes
    seconds: float  # first to last part
    broken: str = ""  # why the stream broke off before its end ('' when it ended cleanly or was stopped)


def read_parts(resp: http.client.HTTPResponse, source: str = "the stream", timeout_s: float | None = None) -> Iterator[bytes]:
    """The JPEGs of ``resp``, a response to a stream request, as they arrive; ``source`` names it and ``timeout_s``
    (its connection's timeout) is quoted in errors.

    Checks at once that it is a 200 ``multipart/x-mixed-replace`` response with a boundary (``MjpegError`` if not);
    the parts are read as the iterator is advanced and it ends with the stream."""
    boundary = resp.headers.get_param("boundary") if resp.headers.get_content_type() == "multipart/x-mixed-replace" else None
    if resp.status != 200 or not isinstance(boundary, str) or not boundary:
        kind = resp.headers.get("Content-Type", "no content type")
        raise MjpegError(f"{source} answered {resp.status} {resp.reason} ({kind}), not an MJPEG stream; is it serving /stream.mjpg?")
    return _parts(_Reader(resp, source, timeout_s), f"--{boundary}".encode("latin-1"), source)


def _parts(reader: _Reader, delimiter: bytes, source: str) -> Iterator[bytes]:
    while True:
        line = reader.line()
        if not line:
            return  # the server ended the stream between parts
        line = line.rstrip()  # the CRLF, and transport padding after a boundary
        if not line:
            continue  # the CRLF that ends a part's data
        if line == delimiter + b"--":
            return  # the closing boundary
        if line != delimiter:
            raise MjpegError(f"{source}: expected the boundary {delimiter.decode('latin-1')!r}, got {line[:60].decode('latin-1')!r}")
        headers: dict[str, str] = {}
        while header := reader.line():
            if not header.strip():
                break
            key, sep, value = header.decode("latin-1").partition(":")
            if not sep:
                raise MjpegError(f"{source}: a part header without ':': {header[:60].decode('latin-1')!r}")
            headers[key.strip().lower()] = value.strip()
        else:
            raise StreamBroken(f"{source} ended inside a part's headers")
        kind = headers.get("content-type", "image/jpeg")
        if kind.split(";")[0].strip().lower() != "image/jpeg":
            raise MjpegError(f"{source}: a part of type {kind!r}, not image/jpeg")
        length = headers.get("content-length", "")
        if not length.isdigit():
            raise MjpegError(f"{source}: a part without a usable Content-Length ({length or 'none'}); parts must give their size")
        data = reader.read(int(length))
        if len(data) < int(length):
            raise StreamBroken(f"{source} ended inside a part: {len(data)} of {length} bytes")
        yield data


class _Reader:
    """Lines and blocks of a streamed response; a connection that fails or stalls raises ``StreamBroken``."""

    def __init__(self, resp: http.client.HTTPResponse, source: str, timeout_s: float | None) -> None:
        self.resp, self.source, self.timeout_s = resp, source, timeout_s

    def line(self) -> bytes:
        """One line (at most ``MAX_LINE`` bytes); ``b""`` at the end of the stream."""
        return self._call(self.resp.readline, MAX_LINE)

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer where the stream ends first (``read1`` as they come: every byte that arrived is counted)."""
        data = bytearray()
        while len(data) < size:
            try:
                piece = self._call(self.resp.read1, size - len(data))
            except StreamBroken as exc:
                if isinstance(exc.__cause__, http.client.IncompleteRead):  # a chunked stream that ended inside a chunk
                    break
                raise
            if not piece:
                break
            data += piece
        return bytes(data)

    def _call(self, read: Callable[[int], bytes], size: int) -> bytes:
        try:
            return read(size)
        except TimeoutError as exc:
            within = f"{self.timeout_s:g} s" if self.timeout_s is not None else "the socket timeout"
            raise StreamBroken(f"{self.source} sent nothing within {within}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise StreamBroken(f"{self.source} broke off: {type(exc).__name__}: {exc}") from exc


class MjpegClient:
    """One viewer of the MJPEG stream at ``url`` (``http://HOST:PORT/PATH?QUERY``): ``with MjpegClient(url) as viewer:
    for jpeg in viewer: ...``. ``timeout_s`` bounds the connection and every read; ``parts`` and ``size`` count what
    was read, ``first_at``/``last_at`` (``time.monotonic()``) when the first and the latest part arrived."""

    def __init__(self, url: str, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None) -> None:
        split = urlsplit(url)
        if split.scheme != "http" or not split.hostname:
            raise MjpegError(f"cannot watch {url!r}: an MJPEG stream is an http://HOST:PORT/PATH address")
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.parts = 0
        self.size = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._split = split
        self._conn: http.client.HTTPConnection | None = None
        self._jpegs: Iterator[bytes] | None = None

    def connect(self) -> MjpegClient:
        """Send the request and check the answer is an MJPEG stream (``MjpegError`` if not, or if nobody answers)."""
        if self._jpegs is not None:
            return self
        split = self._split
        self._conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=self.timeout_s)
        try:
            self._conn.request("GET", (split.path or "/") + (f"?{split.query}" if split.query else ""), headers=self.headers)
            resp = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise MjpegError(f"cannot watch {self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            self._jpegs = read_parts(resp, self.url, self.timeout_s)
        except MjpegError:
            self.close()
            raise
        return self

    def __iter__(self) -> Iterator[bytes]:
        """The JPEGs as they arrive (connecting first if need be), counted; ends with the stream."""
        self.connect()
        assert self._jpegs is not None
        for jpeg in self._jpegs:
            self.last_at = time.monotonic()
            if self.first_at is None:
                self.first_at = self.last_at
            self.parts += 1
            self.size += len(jpeg)
            yield jpeg

    @property
    def seconds(self) -> float:
        """First to latest part, 0 before the second."""
        return self.last_at - self.first_at if self.first_at is not None and self.last_at is not None else 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> MjpegClient:
        return self.connect()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def watch(url: str, timeout_s: float = 10.0, *, max_parts: int | None = None, stop: threading.Event | None = None) -> StreamCount:
    """Read the MJPEG stream at ``url`` until it ends, ``max_parts`` arrived or ``stop`` is set (checked between parts),
    counting the JPEG parts without decoding them, as a browser on another machine would.

    A stream that is not MJPEG, or that nobody serves, raises ``MjpegError``; one that breaks off (``StreamBroken``)
    counts what arrived whole and says why in ``broken``."""
    broken = ""
    with MjpegClient(url, timeout_s) as viewer:
        try:
            for _ in viewer:
                if (max_parts is not None and viewer.parts >= max_parts) or (stop is not None and stop.is_set()):
                    break
        except StreamBroken as exc:
            broken = str(exc)
    return StreamCount(viewer.parts, viewer.size, viewer.seconds, broken)
