"""``edge-app soak``: run the real app for minutes with the web view watched, and report its memory over time.

A leak or heap fragmentation shows only over time: this starts ``edge-app`` as a child process (the
same command a user runs, on a video looped as fast as it goes or with ``--realtime`` at its own
rate, ``--http`` on loopback), keeps ``--viewers``
MJPEG viewers reading ``/stream.mjpg``, and samples the child's resident memory (``VmRSS`` from
``/proc``) every ``--interval`` seconds, with the frames it has classified. The report gives the
growth over the second half of the run in MB per minute, where start-up allocations no longer count.

    edge-app soak --duration 420 --viewers 1          # the drill that found 90 -> 225 MB in 7 minutes
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_app.errors import ConfigError, SourceError
from edge_app.tools.mjpeg import MjpegClient, MjpegError

log = logging.getLogger(__name__)

DESCRIPTION = "Run edge-app with the web view watched for a while and report its resident memory over time."


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    frames: int
    parts: int  # MJPEG parts the viewers received so far
    threads: int = 0  # the app's threads (``Threads`` in /proc): flat when nothing leaks a thread per viewer or request


@dataclass
class SoakReport:
    duration_s: float
    viewers: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def growth_mb_per_min(self) -> float:
        """Least-squares slope of RSS over the second half of the samples, in MB per minute."""
        half = self.samples[len(self.samples) // 2 :]
        if len(half) < 2:
            return 0.0
        ts = [s.t_s for s in half]
        ys = [s.rss_mb for s in half]
        mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
        var = sum((t - mt) ** 2 for t in ts)
        return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "growth_mb_per_min": round(self.growth_mb_per_min, 3)}


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SourceError(f"process {pid} has no VmRSS")


def threads(pid: int) -> int:
    """Threads of process ``pid`` (``Threads`` in /proc; 0 when it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Viewer(threading.Thread):
    """Reads ``/stream.mjpg`` and counts its parts, reconnecting until stopped (a browser tab left open)."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.parts = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with MjpegClient(f"http://127.0.0.1:{self.port}/stream.mjpg", timeout_s=5) as viewer:
                    for _ in viewer:
                        self.parts += 1
                        if self.stop.is_set():
                            break
            except MjpegError as exc:
                log.debug("soak viewer: %s; reconnecting", exc)
                self.stop.wait(0.5)


def status(port: int) -> dict[str, Any]:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/status")
        data: dict[str, Any] = json.loads(conn.getresponse().read())
        conn.close()
        return data
    except (OSError, ValueError):
        return {}


def soak(
    source: Path, duration_s: float, viewers: int, interval_s: float, *, extra_args: list[str], env: dict[str, str] | None = None, realtime: bool = False
) -> SoakReport:
    port = free_port()
    cmd = [sys.executable, "-m", "edge_app", "--source", str(source), "--loop", "--headless", "-q", "--http", f"127.0.0.1:{port}"]
    if realtime:
        cmd.append("--realtime")
    proc = subprocess.Popen([*cmd, *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stop = threading.Event()
    report = SoakReport(duration_s, viewers)
    watchers: list[Viewer] = []
    try:
        deadline = time.monotonic() + 30
        while not status(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SourceError(f"edge-app did not start: {(proc.stderr.read() if proc.stderr else '').strip()[-500:]}")
            time.sleep(0.2)
        watchers = [Viewer(port, stop) for _ in range(viewers)]
        for w in watchers:
            w.start()
        started = time.monotonic()
        while True:
            now = time.monotonic() - started
            report.samples.append(Sample(round(now, 1), round(rss_mb(proc.pid), 1), int(status(port).get("frames", 0)), sum(w.parts for w in watchers),
                                         threads(proc.pid)))
            if now >= duration_s or proc.poll() is not None:
                break
            time.sleep(min(interval_s, max(0.0, duration_s - now)))
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return report


def format_report(r: SoakReport) -> str:
    lines = [f"soak: {r.duration_s:g} s, {r.viewers} viewer(s) on /stream.mjpg", f"{'t (s)':>8} {'RSS (MB)':>9} {'frames':>8} {'parts':>7} {'threads':>7}"]
    lines += [f"{s.t_s:>8.0f} {s.rss_mb:>9.1f} {s.frames:>8} {s.parts:>7} {s.threads:>7}" for s in r.samples]
    first, last = r.samples[0], r.samples[-1]
    lines.append(f"RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB; growth over the second half {r.growth_mb_per_min:+.2f} MB/min")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, metavar="FILE", help="video to loop (default: a synthetic 640x480 MJPG video)")
    parser.add_argument("--duration", type=float, default=300.0, metavar="S", help="seconds to run (default: 300)")
    parser.add_argument("--viewers", type=int, default=1, metavar="N", help="MJPEG viewers kept on /stream.mjpg (default: 1)")
    parser.add_argument("--interval", type=float, default=15.0, metavar="S", help="seconds between memory samples (default: 15)")
    parser.add_argument("--realtime", action="store_true", help="pace the video at its own rate (default: as fast as the app goes, the harder test)")
    parser.add_argument("--json", action="store_true", help="print the samples as JSON")
    parser.add_argument("app_args", nargs="*", metavar="-- EDGE_APP_FLAGS", help="more edge-app flags after --, e.g. -- --model models/cats-vs-dogs")


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.interval <= 0 or args.viewers < 0:
        raise ConfigError("--duration and --interval must be positive and --viewers 0 or more")
    with tempfile.TemporaryDirectory(prefix="edge-app-soak-") as tmp:
        source = args.source
        if source is None:
            from edge_app.tools.video import synthetic_video  # noqa: PLC0415 - OpenCV, only when no video is given

            source = synthetic_video(Path(tmp) / "synthetic.avi")
        if not Path(source).is_file():
            raise SourceError(f"video file {source} does not exist: pass --source FILE or leave it out for a synthetic video")
        report = soak(Path(source), args.duration, args.viewers, args.interval, extra_args=list(args.app_args), env=dict(os.environ), realtime=args.realtime)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return 0
