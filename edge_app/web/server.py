"""Serving the web application: uvicorn (h11, no extras) on a socket bound here, with the connection bounds uvicorn lacks.

``HttpServer`` runs ``uvicorn.Server`` on an event loop in one background thread of the edge-app process (it installs
no signal handlers there: SIGTERM and SIGHUP stay the app's); ``serve`` runs it in the foreground (``edge-app
review``, where Ctrl+C and SIGTERM stop it). Both serve through ``GuardedH11Protocol``, uvicorn's ``H11Protocol`` with:

* a deadline for the request head: the request line and headers must arrive whole within ``header_timeout_s`` of the
  connection (or of the previous response), however slowly their bytes trickle in; else 408 and closed. A kept-alive
  connection that sends nothing is closed silently;
* a cap on open connections, ``max_connections``: a new one beyond it closes the oldest idle ones first (no request
  being served: still sending a head, or kept alive), so 1,000 connections opened and held cannot starve a health
  check; when every connection is busy, the newcomer gets 503;
* a send deadline, ``write_timeout_s``: a client that stops reading (its socket buffer full) for that long is dropped,
  so a stalled MJPEG viewer frees its slot and never holds anyone else up;
* a head larger than ``MAX_HEAD_BYTES`` gets 431, a malformed request 400 with h11's reason, logged at debug level only.

``raise_fd_limit`` lifts the soft ``RLIMIT_NOFILE`` to the hard one, so a burst of connections does not run out of
descriptors. ``stats`` counts what the guard refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge_app.errors import OutputError

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 5.0
DEFAULT_WRITE_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 512
MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
BACKLOG = 2048
GRACEFUL_S = 3.0
FD_LIMIT_CAP = 65536


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard limit (at most ``FD_LIMIT_CAP``); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError) as exc:
            log.debug("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, target, exc)
    return soft


@dataclass
class Guard:
    """The bounds shared by every connection of one server, and what they refused."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    stats: dict[str, int] = field(default_factory=lambda: {"timed_out": 0, "evicted": 0, "refused": 0, "stalled": 0, "bad": 0})
    open: OrderedDict[int, GuardedH11Protocol] = field(default_factory=OrderedDict)  # oldest first


class _QuietLogger(logging.Logger):
    """uvicorn's per-request warnings (a malformed request from anyone) at debug level; errors stay errors."""

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


_QUIET = _QuietLogger("edge_app.web.http")
_QUIET.parent = log


class _Recording(h11.Connection):
    """h11's connection, remembering the protocol error it raised (for the status and reason of the answer)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` with the bounds of the module doc; ``guard`` is set on a subclass per server (``protocol_for``)."""

    guard: Guard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Recording(h11.SERVER, MAX_HEAD_BYTES)
        self.logger = _QUIET
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    # -------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        while len(guard.open) >= guard.max_connections:
            idle = next((c for c in guard.open.values() if c.idle), None)
            if idle is None:
                guard.stats["refused"] += 1
                self._answer(503, "Service Unavailable", "busy: too many open connections; try again\n")
                return
            guard.stats["evicted"] += 1
            idle._forget()
            idle.transport.close()
        guard.open[id(self)] = self
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        self.guard.open.pop(id(self), None)
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None

    @property
    def idle(self) -> bool:
        """No request being served: its head is still arriving, or the connection is kept alive between requests."""
        return self.cycle is None or self.cycle.response_complete

    # -------------------------------------------------------------- request head deadline

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.guard.header_timeout_s, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self.idle:
            return
        if self._head_bytes:
            self.guard.stats["timed_out"] += 1
            self._answer(408, "Request Timeout", "request timeout: the request head did not arrive in time\n")
        else:  # a kept-alive or silent connection: just close it
            self._forget()
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = self.idle and self._head_timer is not None
        if waiting:
            self._head_bytes += len(data)
        super().data_received(data)
        if waiting and not self.idle and self._head_timer is not None:  # the head arrived whole: a request runs
            self._head_timer.cancel()
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head (or the rest of an unread body) has its own deadline

    def send_400_response(self, msg: str) -> None:
        error = self.conn.error if isinstance(self.conn, _Recording) else None
        status = getattr(error, "error_status_hint", 400) if error is not None else 400
        reason = str(error) if error is not None and str(error) else msg
        self.guard.stats["bad"] += 1
        log.debug("bad request from %s: %s", self.client, reason)
        phrase = "Request Header Fields Too Large" if status == 431 else "Bad Request"
        self._answer(status, phrase, f"bad request: {reason}\n")

    def _answer(self, status: int, phrase: str, text: str) -> None:
        """A whole response written straight to the socket (no request is being served), then the connection closed."""
        body = text.encode()
        head = f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        self._forget()
        with contextlib.suppress(RuntimeError, OSError):
            self.transport.write(head.encode() + body)
        self.transport.close()

    # -------------------------------------------------------------- send deadline

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.guard.write_timeout_s, self._write_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timeout(self) -> None:
        self._write_timer = None
        self.guard.stats["stalled"] += 1
        log.debug("web client %s stopped reading for %.1f s: dropped", self.client, self.guard.write_timeout_s)
        self.transport.abort()


def protocol_for(guard: Guard) -> type[GuardedH11Protocol]:
    return type("GuardedH11", (GuardedH11Protocol,), {"guard": guard})


def bind(host: str, port: int, what: str) -> socket.socket:
    """A listening socket on ``host:port``; a failure is one ``OutputError`` line naming ``what``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = host.strip("[]") or ("::" if family == socket.AF_INET6 else "0.0.0.0")  # noqa: S104 - "" asks for every interface
    try:
        sock = socket.create_server((address, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server adds "(while attempting to bind ...)" to strerror
        raise OutputError(f"cannot serve {what} on {host}:{port}: {why}; choose another port or stop the program using it") from exc
    sock.setblocking(False)
    return sock


def config(app: Any, guard: Guard) -> uvicorn.Config:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's start and stop lines are not ours to print
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    return uvicorn.Config(
        app, http=protocol_for(guard), ws="none", lifespan="off", loop="asyncio", interface="asgi3", log_config=None,
        access_log=False, proxy_headers=False, server_header=False, timeout_keep_alive=KEEP_ALIVE_S, backlog=BACKLOG,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_graceful_shutdown=int(GRACEFUL_S),
    )  # fmt: skip


class _ThreadServer(uvicorn.Server):
    """uvicorn's server without signal handlers, ticking once a second instead of ten times (an idle device pays for
    every wake-up), and stopped at once by ``wake()``."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals are the app's: a server in a background thread never installs handlers."""
        yield

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # each tick is a second of uvicorn's: the Date header is refreshed every tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def wake(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._loop.call_soon_threadsafe(self._wake.set)


class HttpServer:
    """``app`` served on ``host:port`` from a background thread; ``start()`` binds (``port`` is then the real one)."""

    def __init__(self, app: Any, host: str, port: int, *, what: str, guard: Guard | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.what = what
        self.guard = guard or Guard()
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> HttpServer:
        raise_fd_limit()
        sock = bind(self.host, self.port, self.what)
        self.port = int(sock.getsockname()[1])
        server = _ThreadServer(config(self.app, self.guard))
        self._server = server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:
                self._error = exc
                log.exception("the web server stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="web-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            self.stop()
            raise OutputError(f"cannot serve {self.what} on {self.host}:{self.port}: the server did not start ({self._error or 'timeout'})")
        return self

    def stop(self, timeout: float = GRACEFUL_S + 2) -> None:
        if self._server is not None:
            self._server.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None


def serve(app: Any, host: str, port: int, *, what: str, guard: Guard | None = None) -> None:
    """Serve ``app`` in the foreground until SIGINT or SIGTERM (uvicorn's own handlers)."""
    raise_fd_limit()
    sock = bind(host, port, what)
    try:
        uvicorn.Server(config(app, guard or Guard())).run(sockets=[sock])
    finally:
        sock.close()
