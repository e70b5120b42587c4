"""``GatedHTTPServer``: an ``http.server`` whose connections cost no thread until their request has arrived.

The standard ``ThreadingHTTPServer`` starts a thread per accepted socket and lets it wait for the
request's headers, so 200 slowloris sockets (each sending a header byte now and then) become 200
blocked threads and nothing bounds them. Here one gate thread reads every new connection's request
head with ``selectors`` (non-blocking), under three limits:

- ``header_timeout_s``: the whole request head (request line and headers) must arrive within this
  time, however slowly its bytes trickle in; late ones are closed (408);
- ``max_pending``: connections still sending their head; beyond it the oldest is closed;
- ``max_active``: requests being served at once (each MJPEG viewer holds one); beyond it a request
  gets 503 at once. Health checks (``cheap_paths``) are always served: they answer in microseconds,
  so a monitoring probe still sees the truth while the server is under such load.

Only a complete head is handed to a handler thread, which reads it back from a buffer (``Prefixed``)
and then the rest from the socket, as ``BaseHTTPRequestHandler`` always does.

``AllowedHosts`` is the ``Host`` check both servers (``web.py`` and ``review/``) make on every request, against
DNS rebinding; ``warn_without_token`` their start-up warning when they serve beyond loopback with no token.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import re
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from edge_app.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 5.0
DEFAULT_MAX_PENDING = 256
DEFAULT_MAX_ACTIVE = 32
MAX_HEAD_BYTES = 16 * 1024
GATE_POLL_S = 0.25


class Prefixed(io.RawIOBase):
    """A socket's byte stream with the bytes the gate already read put back in front."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(buffer)


@dataclass
class Arrived:
    """A connection whose request head is complete: what a handler gets instead of a bare socket."""

    sock: socket.socket
    head: bytes
    path: str


@dataclass
class _Pending:
    sock: socket.socket
    address: Any
    since: float
    data: bytearray = field(default_factory=bytearray)


def request_path(head: bytes) -> str:
    """The path of ``GET /healthz?x HTTP/1.1`` (``""`` when the request line is not one)."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) < 2:
        return ""
    return parts[1].split(b"?", 1)[0].decode("latin-1").rstrip("/") or "/"


class GatedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` behind the gate described in the module doc; ``stats`` counts what the gate refused."""

    daemon_threads = True
    request_queue_size = 128  # listen() backlog: socketserver's 5 makes a burst of connections wait for SYN retries

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        *,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_active: int = DEFAULT_MAX_ACTIVE,
        cheap_paths: tuple[str, ...] = (),
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_pending = max_pending
        self.max_active = max_active
        self.cheap_paths = cheap_paths
        self.stats = {"timed_out": 0, "evicted": 0, "busy": 0, "too_large": 0}
        self.active = 0
        self._active_lock = threading.Lock()
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._new: list[tuple[socket.socket, Any]] = []
        self._new_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._closing = threading.Event()
        self._gate = threading.Thread(target=self._gate_loop, name="web-gate", daemon=True)
        super().__init__(address, handler, bind_and_activate=True)  # a failed bind calls server_close() itself
        self._gate.start()

    # ---------------------------------------------------------------- accept side (serve_forever's thread)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the new connection to the gate instead of starting a thread for it."""
        with self._new_lock:
            self._new.append((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._gate.ident is not None:
            self._gate.join(timeout=2)
        super().server_close()
        for pending in list(self._pending.values()):
            self._drop(pending)
        with self._new_lock:
            for sock, _ in self._new:
                sock.close()
            self._new.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # ---------------------------------------------------------------- the gate

    def _gate_loop(self) -> None:
        while not self._closing.is_set():
            try:
                events = self._selector.select(GATE_POLL_S)
            except (OSError, ValueError):
                return
            for key, _ in events:
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                pending = key.data
                if isinstance(pending, _Pending):
                    self._read(pending)
            self._admit_new()
            self._expire()

    def _admit_new(self) -> None:
        with self._new_lock:
            new, self._new = self._new, []
        for sock, address in new:
            sock.setblocking(False)
            pending = _Pending(sock, address, time.monotonic())
            while len(self._pending) >= self.max_pending:
                _, oldest = self._pending.popitem(last=False)
                self.stats["evicted"] += 1
                self._drop(oldest)
            self._pending[id(sock)] = pending
            self._selector.register(sock, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> None:
        try:
            chunk = pending.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client closed before sending a whole request
            self._forget(pending)
            self._drop(pending)
            return
        pending.data += chunk
        end = pending.data.find(b"\r\n\r\n")
        if end < 0:
            if len(pending.data) > MAX_HEAD_BYTES:
                self.stats["too_large"] += 1
                self._forget(pending)
                self._reply_and_drop(pending.sock, 431, "Request Header Fields Too Large")
            return
        self._forget(pending)
        head = bytes(pending.data)
        path = request_path(head)
        with self._active_lock:
            admit = self.active < self.max_active or path in self.cheap_paths
            if admit:
                self.active += 1
        if not admit:
            self.stats["busy"] += 1
            self._reply_and_drop(pending.sock, 503, "Service Unavailable", f"busy: {self.max_active} requests are being served; try again\n")
            return
        pending.sock.setblocking(True)
        threading.Thread(target=self._serve, args=(Arrived(pending.sock, head, path), pending.address), name="web-request", daemon=True).start()

    def _expire(self) -> None:
        deadline = time.monotonic() - self.header_timeout_s
        while self._pending:
            pending = next(iter(self._pending.values()))
            if pending.since > deadline:
                break
            self._forget(pending)
            self.stats["timed_out"] += 1
            self._reply_and_drop(pending.sock, 408, "Request Timeout")

    def _forget(self, pending: _Pending) -> None:
        self._pending.pop(id(pending.sock), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(pending.sock)

    @staticmethod
    def _drop(pending: _Pending) -> None:
        with contextlib.suppress(OSError):
            pending.sock.close()

    @staticmethod
    def _reply_and_drop(sock: socket.socket, code: int, reason: str, body: str = "") -> None:
        text = body or f"{reason.lower()}\n"
        response = f"HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n{text}"
        with contextlib.suppress(OSError):
            sock.send(response.encode())  # non-blocking, best effort: a few bytes always fit in the send buffer
        with contextlib.suppress(OSError):
            sock.close()

    # ---------------------------------------------------------------- handler threads

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A handler's unexpected exception: one log line with the traceback (not socketserver's print to stderr)."""
        log.exception("web request from %s failed", client_address[0] if isinstance(client_address, tuple) else client_address)

    def _serve(self, arrived: Arrived, address: Any) -> None:
        try:
            self.finish_request(arrived, address)  # type: ignore[arg-type]  # the handler unwraps Arrived in setup()
        except Exception:
            self.handle_error(arrived.sock, address)
        finally:
            with self._active_lock:
                self.active -= 1
            self.shutdown_request(arrived.sock)


class GatedHTTPServerV6(GatedHTTPServer):
    address_family = socket.AF_INET6


# ---------------------------------------------------------------- Host check (DNS rebinding)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")  # noqa: S104 - names of "every interface", compared, not bound
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?")


def _normal(host: str) -> str:
    """A host in one spelling: lower case, an IPv6 address compressed and an IPv4-mapped one as IPv4."""
    host = host.strip().lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_of(value: str) -> str | None:
    """The host of a ``Host`` header value (``name``, ``name:port``, ``1.2.3.4:80``, ``[::1]:80``) without its port,
    in one spelling (see ``_normal``); None when it is no such thing."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        try:
            return _normal(str(ipaddress.IPv6Address(host)))
        except ValueError:
            return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host = value
    elif not port.isdigit():
        return None
    host = host.lower()
    return _normal(host) if HOST_NAME.fullmatch(host) else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a name) is this machine only: ``localhost``, ``127.x.x.x`` or ``::1``."""
    host = host.strip().strip("[]").lower()
    return host == "localhost" or (_is_address(host) and ipaddress.ip_address(host).is_loopback)


def machine_names() -> set[str]:
    """This machine's host name, its short form and its mDNS name (``pi``, ``pi.lan``, ``pi.local``); no DNS lookup."""
    name = socket.gethostname().strip().lower()
    if not name:
        return set()
    short = name.split(".", 1)[0]
    return {name, short, f"{short}.local"}


class AllowedHosts:
    """The names a server answers to, checked against each request's ``Host`` header (as Starlette's
    ``TrustedHostMiddleware`` does), so that a page on another site cannot reach it through DNS rebinding (a name
    of the attacker's that resolves to this device: the browser then sends that name as ``Host`` and ``Origin``,
    which the cross-site check alone cannot tell from this server's own).

    Allowed: the bound address; ``localhost``, ``127.0.0.1`` and ``::1`` when bound to loopback or every interface;
    this machine's host names (``machine_names``) when bound beyond loopback; the address the request arrived on
    (a browser that typed the device's IP address); and ``names``: exact names or addresses, ``*.example.com`` for
    a domain's names, or ``*`` for any (only behind a proxy that checks ``Host`` itself). The port is not checked.
    """

    def __init__(self, bind: str, names: Sequence[str] = (), hint: str = "") -> None:
        self.any = False
        self.suffixes: list[str] = []
        allowed: set[str] = set()
        for name in names:
            text = name.strip().lower()
            if text == "*":
                self.any = True
                continue
            bare = text[2:] if text.startswith("*.") else text
            host = _normal(bare) if _is_address(bare) else host_of(bare)
            if host is None or "*" in bare:
                raise ConfigError(f"bad host name {name!r}: expected a name (device.example), an address, *.example.com or *")
            if text.startswith("*."):
                self.suffixes.append(f".{host}")
            else:
                allowed.add(host)
        bind = bind.strip().strip("[]")
        if bind in WILDCARD_ADDRESSES:
            allowed |= {*LOOPBACK_NAMES, *machine_names()}
        elif is_loopback(bind):
            allowed |= {*LOOPBACK_NAMES, _normal(bind)}
        else:
            allowed |= {_normal(bind), *machine_names()}
        self.names = frozenset(allowed)
        self.hint = hint

    def refusal(self, values: Sequence[str], local_address: str | None = None) -> str | None:
        """None when a request whose ``Host`` header(s) are ``values``, received on ``local_address``, may be served;
        else why not, in one line."""
        if self.any:
            return None
        if len(values) != 1:
            return f"bad request: expected one Host header, got {len(values)}"
        host = host_of(values[0])
        if host is None:
            return f"bad request: malformed Host header {values[0][:100]!r}"
        if host in self.names or any(host.endswith(s) for s in self.suffixes):
            return None
        if local_address is not None and host == _normal(local_address.split("%", 1)[0]):
            return None
        return f"misdirected request: {host[:100]!r} is not a name of this server{self.hint}"


def warn_without_token(logger: logging.Logger, what: str, bind: str, token: str | None, fix: str) -> None:
    """One warning line when ``bind`` is beyond loopback and no token guards the server."""
    bind = bind.strip().strip("[]")
    if token is None and not is_loopback(bind):
        where = "every interface" if bind in WILDCARD_ADDRESSES else bind
        logger.warning("%s is served on %s without a token: anyone who can reach this device can use it; %s", what, where, fix)
