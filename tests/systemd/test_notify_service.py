"""The service's ExecStartPre/ExecStart command lines against a systemd-style notify socket: READY, WATCHDOG, STOPPING.

The app runs as the unit runs it (``edge-app --config FILE --headless``, with the shipped example config pointed at a
real video and a temporary log), with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set as systemd sets them for
``Type=notify`` and ``WatchdogSec=``; the test plays systemd's part on a datagram socket it binds.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from converter.data.datasets import Dataset

REPO = Path(__file__).resolve().parents[2]
EDGE_APP = Path(sys.prefix) / "bin" / "edge-app"
WATCHDOG_USEC = 2_000_000  # systemd would set WatchdogSec=2s: pings expected about every second


def toml_line(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, str):
        return f"{key} = {json.dumps(value)}"  # JSON string escapes are valid TOML basic strings
    return f"{key} = {value!r}"


@pytest.fixture
def service_config(tmp_path: Path, cifar10_val: Dataset, write_video: Callable[..., Path]) -> Path:
    """systemd/config.example.toml with the camera swapped for a looping real video and the log moved to tmp_path."""
    video = write_video(tmp_path / "cifar.avi", list(cifar10_val.x[:40]), size=(320, 240), fps=15.0)
    settings = tomllib.loads((REPO / "systemd" / "config.example.toml").read_text())
    assert all(isinstance(v, dict) for v in settings.values()), "the example config is one table per section"
    sources = {k: v for k, v in settings["sources"].items() if k not in ("camera", "picamera", "targets")}
    settings["sources"] = {**sources, "targets": [str(video)], "loop": True, "realtime": True}
    settings["log"]["path"] = str(tmp_path / "log" / "results.jsonl")
    settings["model"]["threads"] = 1
    # the 32 px CIFAR-10 model: the threshold the file leaves unset is the rule's 0.2 for its 10 classes, on these CIFAR-10 photos
    settings["model"]["path"] = str(REPO / "models" / "cifar10")
    settings.pop("snapshots", None)
    path = tmp_path / "config.toml"
    path.write_text("".join(f"[{name}]\n" + "".join(toml_line(k, v) + "\n" for k, v in table.items()) for name, table in settings.items()))
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    assert len(str(path)) < 100, f"AF_UNIX path too long: {path}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket, until: Callable[[list[tuple[float, str]]], bool], timeout: float) -> list[tuple[float, str]]:
    """(monotonic time, line) for every notification line until ``until(lines)`` or the timeout."""
    lines: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while not until(lines):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        now = time.monotonic()
        lines.extend((now, line) for line in data.decode().splitlines())
    return lines


def test_check_config_accepts_the_service_config(service_config: Path) -> None:
    result = subprocess.run([str(EDGE_APP), "--check-config", "--config", str(service_config)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ready_then_watchdog_pings_then_stopping_on_sigterm(service_config: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC=str(WATCHDOG_USEC))
    proc = subprocess.Popen(
        [str(EDGE_APP), "--config", str(service_config), "--headless"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        startup = receive(sock, lambda ls: any(line == "READY=1" for _, line in ls), timeout=90)
        assert any(line == "READY=1" for _, line in startup), f"no READY=1 (got {startup}); exit code {proc.poll()}"

        running = receive(sock, lambda ls: sum(line == "WATCHDOG=1" for _, line in ls) >= 4, timeout=8)
        pings = [t for t, line in running if line == "WATCHDOG=1"]
        assert len(pings) >= 4, f"expected a WATCHDOG=1 about every second, got {running}"
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < WATCHDOG_USEC / 1e6, f"pings {gaps} s apart: systemd would kill the service"
        assert min(gaps) > 0.2, f"pings {gaps} s apart: not rate-limited to half the watchdog interval"
        assert proc.poll() is None, "the app exited while it should be looping over the video"

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"SIGTERM should be a clean stop (exit 0), got {proc.returncode}: {err}"
    shutdown = receive(sock, lambda ls: any(line == "STOPPING=1" for _, line in ls), timeout=5)
    assert any(line == "STOPPING=1" for _, line in shutdown), f"no STOPPING=1 after SIGTERM (got {shutdown})"
    status = [line for _, line in startup + running + shutdown if line.startswith("STATUS=")]
    assert status, "systemctl status would show no status line"

    log = service_config.parent / "log" / "results.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records, "the service config's log got no results"
