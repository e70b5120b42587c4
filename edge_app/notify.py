"""systemd ``sd_notify`` over ``$NOTIFY_SOCKET``: READY, STATUS, WATCHDOG and STOPPING.

A unit with ``Type=notify`` learns when the app is ready; with ``WatchdogSec=`` systemd sets
``WATCHDOG_USEC`` and restarts the service when the pings stop. Outside systemd (no
``$NOTIFY_SOCKET``) every method is a no-op. Datagrams go to an AF_UNIX path or an abstract
socket (a name starting with ``@``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd; ``watchdog()`` may be called every frame (it rate-limits itself)."""

    def __init__(self, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval(env)
        self._clock = clock
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Running under systemd with a notification socket."""
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not under systemd or the send failed."""
        if self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0))
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", os.fsdecode(self.address), exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"] + ([f"STATUS={status}"] if status else [])
        sent = self.send(*lines)
        if sent:
            self._last_ping = self._clock()  # READY counts as a sign of life
        return sent

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` at most every half ``WatchdogSec``; False when nothing was sent."""
        interval = self.watchdog_interval_s
        if interval is None or self.address is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < interval / 2:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"] + ([f"STATUS={status}"] if status else [])
        return self.send(*lines)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _address(value: str) -> bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value.encode()
    log.warning("ignoring NOTIFY_SOCKET=%r: expected an absolute path or an @abstract name", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """``WATCHDOG_USEC`` in seconds, if it is meant for this process (``WATCHDOG_PID`` unset or ours)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6
