"""sd_notify against a real AF_UNIX datagram socket bound here (a path and an abstract name), as systemd does."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.notify import Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(1.0)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return messages


def test_ready_status_watchdog_stopping_reach_the_socket(listener) -> None:
    sock, path = listener
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}, clock=clock)
    assert notifier.enabled and notifier.watchdog_interval_s == 2.0
    assert notifier.ready("model loaded, camera 0 open")
    assert notifier.status("12.5 fps")
    assert not notifier.watchdog()  # READY counts as a ping: the next is due after WatchdogSec/2
    clock.now += 0.5
    assert not notifier.watchdog()
    clock.now += 0.6
    assert notifier.watchdog()
    for _ in range(10):  # a fast frame loop pings every frame; at most one per second goes out
        clock.now += 0.15
        notifier.watchdog()
    assert notifier.stopping("stopping: SIGTERM")
    notifier.close()
    assert received(sock) == [
        "READY=1\nSTATUS=model loaded, camera 0 open",
        "STATUS=12.5 fps",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: SIGTERM",
    ]


def test_abstract_socket_names() -> None:
    name = f"edge-app-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_no_op_outside_systemd_and_for_another_process_watchdog(listener) -> None:
    plain = Notifier({})
    assert not plain.enabled
    assert not plain.ready() and not plain.status("x") and not plain.watchdog() and not plain.stopping()
    sock, path = listener
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_s is None and not other.watchdog()
    ours = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog() and received(sock) == ["WATCHDOG=1"]
    assert Notifier({"NOTIFY_SOCKET": "relative.sock"}).address is None


def test_a_vanished_socket_is_warned_about_once_and_never_raises(tmp_path: Path, caplog) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready()
    assert not notifier.status("still running")
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
