"""``edge-app bench``: how fast the whole pipeline runs, stage by stage, against the naive loop.

Three measurements on the same video and model:

* the pipeline: ``App`` headless (capture thread, which also preprocesses, then invoke, smoothing,
  top-k), per-stage latency (mean, p50, p95), FPS, start-up to first inference and peak RSS;
* the naive single-thread loop of the TensorFlow Lite Raspberry Pi example:
  ``VideoCapture.read()`` -> preprocess -> invoke, one after the other;
* with ``--draw``, both loops also draw the overlay on every frame, as a display would;
* bare ``invoke()`` on a fixed input, to show how much the pipeline adds around the model;
* with ``--viewers N``: the headless pipeline with a ``WebServer`` sink, alternately with no viewer
  and with N MJPEG viewers reading ``/stream.mjpg`` (``--rounds`` pairs of runs, in A/B then B/A
  order, medians reported), to show what streaming costs the frame loop. The viewers are separate
  processes (so their socket reads do not take the app's GIL) that count the JPEG parts they
  receive without decoding them, as a browser on another machine would.

Every loop also reports its CPU time per frame (the process's CPU seconds, all threads, over the
frames), the figure that matters on a Raspberry Pi where the camera sets the frame rate; the
decode-only ceiling (read and decode the video as fast as possible, nothing else) is the physical
limit both loops are measured against; and ``--rate R`` runs the pipeline paced at R frames a
second, as a camera would, and reports its share of one core.

``--source synthetic`` (the default) writes a 640x480 MJPG video of moving shapes to a temporary
folder first, so the benchmark needs no camera and no data.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge_app.app import App
from edge_app.config import AppConfig
from edge_app.delegates import DELEGATES, load_classifier
from edge_app.errors import ConfigError, OutputError, SourceError
from edge_app.model import resolve_model, top_k
from edge_app.notify import Notifier
from edge_app.outputs import FrameResult, Sink
from edge_app.outputs.draw import draw_overlay
from edge_app.runtime import get_runtime
from edge_app.sources import OpenCVSource, spec_from_args
from edge_app.web import WebServer

DESCRIPTION = "Benchmark the recognition pipeline (per-stage latency, FPS, memory) against the naive single-thread loop and bare invoke()."
STAGES = ("capture", "preprocess", "invoke", "draw", "total")
SYNTHETIC = "synthetic"
MAX_VIEWERS = 16
MAX_CAMERAS = 8
VIEWER_CONNECT_S = 60.0  # spawning the viewer processes and connecting, on a loaded machine
VIEWER_READ_S = 60.0  # a viewer's socket timeout: covers model load and source open before the first frame


@dataclass
class StageStats:
    mean: float
    p50: float
    p95: float

    @classmethod
    def of(cls, values_ms: list[float]) -> StageStats:
        a = np.asarray(values_ms, dtype=np.float64)
        if a.size == 0:
            return cls(math.nan, math.nan, math.nan)
        return cls(round(float(a.mean()), 3), round(float(np.percentile(a, 50)), 3), round(float(np.percentile(a, 95)), 3))


@dataclass
class LoopResult:
    frames: int
    fps: float
    stages: dict[str, StageStats]
    labels: list[str] = field(default_factory=list, repr=False)
    cpu_ms_per_frame: float = math.nan  # process CPU time (every thread) per frame
    # the pipeline's CPU per frame by thread ("frame loop", "capture", "interpreter and other native threads"),
    # over its middle frames (Linux: /proc/self/task); empty where that cannot be read
    thread_cpu_ms: dict[str, float] = field(default_factory=dict)
    prepared_on: str | None = None  # the pipeline's: the thread that prepared the inputs at the end (edge_app.balance)


@dataclass
class PacedRun:
    """The pipeline paced at ``rate`` frames a second (``--rate``): what a camera at that rate costs."""

    rate: float
    frames: int
    seconds: float
    cpu_ms_per_frame: float
    core_pct: float  # CPU seconds over wall seconds, in percent of one core


@dataclass
class CamerasRun:
    """``cameras`` paced sources at ``rate`` in one process (``--cameras N``): what each camera costs."""

    mode: str  # "shared": one app, several sources, one interpreter round-robin; "per-source": one app (and interpreter) per camera, in threads
    cameras: int
    rate: float
    frames: list[int]  # classified, per camera
    seconds: float
    core_pct: float  # CPU seconds over wall seconds, every camera together, in percent of one core
    core_pct_per_camera: float
    cpu_ms_per_frame: float


@dataclass
class BenchReport:
    source: str
    frame_size: tuple[int, int]  # (width, height)
    model: str
    input_size: tuple[int, int, int]
    runtime: str
    delegate: str
    threads: int | None  # the pipeline interpreter's CPU threads
    threads_auto: bool  # chosen by --threads' default (edge_app.delegates.auto_threads), not asked for
    pipeline: LoopResult
    naive: LoopResult
    speedup: float  # pipeline FPS / naive FPS
    bare_invoke: StageStats
    overhead_pct: float  # pipeline time per frame over bare invoke(), in percent
    startup_s: float  # App() to the first classified frame: model load, source open, first frame
    peak_rss_mb: float | None
    labels_agree: float  # share of frames where the pipeline and the naive loop gave the same top-1
    drawn: bool = False  # both loops drew the overlay (--draw); otherwise headless
    decode: LoopResult | None = None  # the decode-only ceiling: read and decode, nothing else
    paced: PacedRun | None = None  # with --rate R
    cameras: list[CamerasRun] | None = None  # with --cameras N: the shared interpreter against one per camera
    viewers: ViewerComparison | None = None  # with --viewers N
    repeats: Repeats | None = None  # with --repeat N > 1: every run's headline figures and their medians

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for loop in ("pipeline", "naive"):
            data[loop].pop("labels", None)
        return data


@dataclass
class Repeats:
    """The headline figures of ``runs`` whole benchmarks in a row, and their medians (robust to a noisy machine)."""

    runs: int
    pipeline_fps: list[float]
    naive_fps: list[float]
    speedup: list[float]
    bare_invoke_ms: list[float]
    overhead_pct: list[float]
    startup_s: list[float]
    peak_rss_mb: list[float | None]  # the process's peak so far: it only grows from run to run
    median: dict[str, float]

    @classmethod
    def of(cls, reports: Sequence[BenchReport]) -> Repeats:
        figures = {
            "pipeline_fps": [round(r.pipeline.fps, 1) for r in reports],
            "naive_fps": [round(r.naive.fps, 1) for r in reports],
            "speedup": [r.speedup for r in reports],
            "bare_invoke_ms": [r.bare_invoke.mean for r in reports],
            "overhead_pct": [r.overhead_pct for r in reports],
        }
        return cls(
            runs=len(reports),
            **figures,
            startup_s=[r.startup_s for r in reports],
            peak_rss_mb=[r.peak_rss_mb for r in reports],
            median={k: _median(v) for k, v in figures.items()},
        )


@dataclass
class ViewerRun:
    """One headless pipeline run with a ``WebServer`` sink and ``viewers`` MJPEG clients."""

    viewers: int
    frames: int
    fps: float
    capture: StageStats  # the frame loop's wait for the capture thread
    invoke: StageStats
    total: StageStats
    encoded: int  # JPEGs the server made (one per streamed frame, shared by all viewers)
    parts: list[int]  # JPEG parts each viewer received
    stream_fps: list[float]  # parts per second each viewer received, first to last part


@dataclass
class ViewerSide:
    """All runs with the same number of viewers; the figures are medians over the runs."""

    viewers: int
    fps: float
    invoke_ms: float  # median of the runs' mean invoke() time
    invoke_p95_ms: float
    capture_ms: float  # median of the runs' mean wait for a frame
    total_ms: float  # median of the runs' mean loop time per frame
    runs: list[ViewerRun]


@dataclass
class ViewerComparison:
    viewers: int
    rounds: int  # A/B pairs run, alternating the order
    frames: int  # per run
    max_fps: float  # the web view's encoding limit
    clients: str
    idle: ViewerSide  # WebServer attached, nobody watching
    watched: ViewerSide  # the same with ``viewers`` clients on /stream.mjpg
    fps_diff_pct: float  # watched FPS over idle FPS, in percent (negative: slower)
    invoke_diff_pct: float  # watched mean invoke() time over idle, in percent (positive: slower)


# ---------------------------------------------------------------------- inputs


def synthetic_video(path: Path, frames: int = 300, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> Path:
    """A reproducible MJPG video of coloured shapes moving over a gradient."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write a synthetic video to {path}: check that the folder is writable")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)), ((xx + yy) * 255 // max(1, w + h - 2))], -1).astype(np.uint8)
    shapes = [(rng.integers(0, w), rng.integers(0, h), rng.integers(20, h // 4), tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(6)]
    for i in range(frames):
        frame = np.roll(base, 4 * i, axis=1)
        for k, (x, y, r, color) in enumerate(shapes):
            cx = int(x + 60 * math.sin(0.05 * i + k)) % w
            cy = int(y + 40 * math.cos(0.07 * i + k)) % h
            if k % 2:
                cv2.circle(frame, (cx, cy), int(r), color, cv2.FILLED)
            else:
                cv2.rectangle(frame, (cx - int(r), cy - int(r) // 2), (cx + int(r), cy + int(r) // 2), color, cv2.FILLED)
        writer.write(frame)
    writer.release()
    return path


def video_info(path: Path) -> tuple[int, tuple[int, int]]:
    """(frame count, (width, height)) of a video file; ``SourceError`` if OpenCV cannot read it."""
    if not path.is_file():
        raise SourceError(f"bench source {path} is not a video file: pass a video file or --source synthetic")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"video file {path} could not be decoded: pass a video OpenCV can read, or --source synthetic")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return count, size


# ---------------------------------------------------------------------- loops


def thread_cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread of this process by native id, with its Python name if it has one."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[int, tuple[str, float]] = {}
    try:
        tick = os.sysconf("SC_CLK_TCK")
        tids = os.listdir("/proc/self/task")
    except (AttributeError, OSError, ValueError):  # not Linux
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        out[int(tid)] = (names.get(int(tid), ""), (int(fields[11]) + int(fields[12])) / tick)
    return out


def _thread_role(name: str, loop_thread: str) -> str:
    if name == loop_thread:
        return "frame loop"
    if name.startswith("capture "):
        return "capture"
    return "interpreter and other native threads" if not name else "other Python threads"


class _Recorder:
    """The pipeline's output for the benchmark: draws the overlay like the display would (if ``draw``), keeps timings,
    and reads every thread's CPU time at two frames in the middle of the run (while the capture thread still runs)."""

    def __init__(self, draw: bool = True, frames: int = 0) -> None:
        self.draw = draw
        self.results: list[FrameResult] = []
        self.done: list[float] = []
        self.window = (frames // 10, frames - frames // 10 - 16) if frames >= 100 else None
        self.cpu: list[dict[int, tuple[str, float]]] = []

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self.draw:
            draw_overlay(frame, result)
        self.results.append(result)
        self.done.append(time.perf_counter())
        if self.window is not None and len(self.results) in self.window:
            self.cpu.append(thread_cpu_seconds())

    def thread_cpu_ms(self) -> dict[str, float]:
        """CPU ms per frame by role over the window (empty when it was not read)."""
        if self.window is None or len(self.cpu) != 2:
            return {}
        first, last = self.cpu
        frames = self.window[1] - self.window[0]
        loop = threading.current_thread().name
        roles: dict[str, float] = {}
        for tid, (name, seconds) in last.items():
            role = _thread_role(name, loop)
            roles[role] = roles.get(role, 0.0) + seconds - first.get(tid, (name, 0.0))[1]
        return {role: round(s * 1e3 / frames, 3) for role, s in sorted(roles.items()) if s > 0}

    def close(self) -> None:
        return None


def _fps(done: list[float]) -> float:
    return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else math.nan


def run_pipeline(config: AppConfig, extra_sinks: Sequence[Sink] = (), draw: bool = False) -> tuple[LoopResult, float, App]:
    """The real ``App`` on ``config`` (headless, max_frames set); its per-stage timings and start-up time."""
    recorder = _Recorder(draw, config.max_frames or 0)
    started = time.monotonic()
    cpu = time.process_time()
    app = App(config, extra_sinks=[recorder, *extra_sinks], handle_signals=False, notifier=Notifier({}))
    app.run()
    cpu = time.process_time() - cpu
    startup = (app.first_result_at - started) if app.first_result_at is not None else math.nan
    stages = {s: StageStats.of([r.latency_ms[s] for r in recorder.results]) for s in STAGES}
    labels = [r.label or "" for r in recorder.results]
    n = len(recorder.results)
    result = LoopResult(n, _fps(recorder.done), stages, labels, round(cpu * 1e3 / n, 3) if n else math.nan, recorder.thread_cpu_ms(), app.balancer.where)
    return result, startup, app


def run_decode(video: Path, frames: int, reduce_to: tuple[int, int] | None = None, cover: float = 1.0) -> LoopResult:
    """The decode-only ceiling: the app's own ``OpenCVSource`` reading and decoding as fast as it goes, nothing else
    (what no loop can beat); ``reduce_to`` and ``cover`` decode as ``--decode reduced`` does for that model input."""
    source = OpenCVSource(replace(spec_from_args(source=video), reduce_to=reduce_to, reduce_cover=cover))
    source.open()
    done: list[float] = []
    reads: list[float] = []
    cpu = time.process_time()
    try:
        for _ in range(frames):
            t = time.perf_counter()
            if source.read() is None:
                break
            now = time.perf_counter()
            reads.append((now - t) * 1e3)
            done.append(now)
    finally:
        source.close()
    cpu = time.process_time() - cpu
    n = len(done)
    return LoopResult(n, _fps(done), {"capture": StageStats.of(reads)}, [], round(cpu * 1e3 / n, 3) if n else math.nan)


def run_paced(config: AppConfig, rate: float, seconds: float, workdir: Path) -> PacedRun:
    """The pipeline on a synthetic video written at ``rate`` fps and paced at it (``--realtime``) for ``seconds``."""
    frames = max(2, round(rate * seconds))
    video = synthetic_video(workdir / f"paced-{rate:g}.avi", frames, fps=rate)
    paced = replace(config, source=(str(video),), realtime=True, max_frames=frames)
    started, cpu = time.monotonic(), time.process_time()
    app = App(paced, handle_signals=False, notifier=Notifier({}))
    app.run()
    cpu, wall = time.process_time() - cpu, time.monotonic() - started
    n = max(1, app.frames)
    return PacedRun(rate, app.frames, round(wall, 2), round(cpu * 1e3 / n, 3), round(100.0 * cpu / wall, 2) if wall > 0 else math.nan)


def run_cameras(config: AppConfig, cameras: int, rate: float, seconds: float, workdir: Path) -> list[CamerasRun]:
    """``cameras`` synthetic videos paced at ``rate`` (``--realtime``, like cameras): one app with all of them as sources
    (one interpreter, round-robin), then one app per video in threads (one interpreter each); CPU share of one core."""
    n = max(2, round(rate * seconds))
    videos = [synthetic_video(workdir / f"camera{i}.avi", n, fps=rate) for i in range(cameras)]
    base = replace(config, realtime=True, max_frames=None)
    runs = []
    for mode in ("shared", "per-source"):
        if mode == "shared":
            apps = [App(replace(base, source=tuple(f"camera{i}={v}" for i, v in enumerate(videos))), handle_signals=False, notifier=Notifier({}))]
        else:
            apps = [App(replace(base, source=(str(v),)), handle_signals=False, notifier=Notifier({})) for v in videos]
        threads = [threading.Thread(target=app.run, name=f"bench {mode} {i}", daemon=True) for i, app in enumerate(apps)]
        started, cpu = time.monotonic(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = time.process_time() - cpu, time.monotonic() - started
        frames = [ch.frames for app in apps for ch in app.channels]
        pct = round(100.0 * cpu / wall, 2) if wall > 0 else math.nan
        runs.append(CamerasRun(mode, cameras, rate, frames, round(wall, 2), pct, round(pct / cameras, 2), round(cpu * 1e3 / max(1, sum(frames)), 3)))
    return runs


def run_naive(video: Path, config: AppConfig, frames: int, draw: bool = False) -> LoopResult:
    """The TensorFlow Lite Raspberry Pi example's loop: read, preprocess, invoke (and draw), in sequence in one thread."""
    files = resolve_model(config.model, config.labels)
    classifier, _ = load_classifier(files, config.delegate, config.device, config.threads)
    cap = cv2.VideoCapture(str(video))
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    labels: list[str] = []
    done: list[float] = []
    cpu = time.process_time()
    try:
        for i in range(frames):
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            image = classifier.prepare(frame)
            t2 = time.perf_counter()
            scores = classifier.invoke(image)
            t3 = time.perf_counter()
            top = top_k(scores, classifier.labels, config.top_k, config.threshold)
            fps = _fps(done[-30:]) if len(done) > 1 else 0.0
            result = FrameResult(i, time.time(), top, {"invoke": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}, fps, False)
            if draw:
                draw_overlay(frame, result)
            t4 = time.perf_counter()
            for stage, ms in zip(STAGES, ((t1 - t0), (t2 - t1), (t3 - t2), (t4 - t3), (t4 - t0)), strict=True):
                times[stage].append(ms * 1e3)
            labels.append(result.label or "")
            done.append(t4)
    finally:
        cap.release()
    cpu = time.process_time() - cpu
    n = len(done)
    return LoopResult(n, _fps(done), {s: StageStats.of(v) for s, v in times.items()}, labels, round(cpu * 1e3 / n, 3) if n else math.nan)


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


# ---------------------------------------------------------------------- MJPEG viewers


@dataclass
class StreamCount:
    parts: int  # JPEG parts received
    size: int  # their bytes
    seconds: float  # first to last part


def watch_stream(url: str, timeout_s: float = VIEWER_READ_S) -> StreamCount:
    """An MJPEG viewer: read ``url`` until the server ends the stream, counting the JPEG parts without decoding them."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=timeout_s)
    parts = size = 0
    first = last = 0.0
    try:
        conn.request("GET", split.path or "/")
        resp = conn.getresponse()
        boundary = resp.headers.get_param("boundary")
        if resp.status != 200 or not isinstance(boundary, str):
            raise OutputError(f"bench viewer: {url} answered {resp.status} {resp.reason}, not an MJPEG stream; is the web view serving /stream.mjpg?")
        marker = f"--{boundary}".encode()
        try:
            while line := resp.readline():
                if line.strip() != marker:
                    continue
                length = -1
                while header := resp.readline().strip():
                    key, _, value = header.decode("latin-1").partition(":")
                    if key.strip().lower() == "content-length":
                        length = int(value)
                if length < 0 or len(resp.read(length)) < length:
                    break
                last = time.monotonic()
                first = first or last
                parts += 1
                size += length
        except (OSError, http.client.HTTPException):
            pass  # the stream broke off: report what arrived
    finally:
        conn.close()
    return StreamCount(parts, size, last - first)


def _wait_for_viewers(server: WebServer, futures: list[Future[StreamCount]], timeout_s: float = VIEWER_CONNECT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while server.viewers < len(futures):
        for f in futures:
            if f.done():
                f.result()  # raises the viewer's error, if any
                raise OutputError(f"a bench viewer of {server.url}stream.mjpg ended before the run started; check the web view")
        if time.monotonic() > deadline:
            raise OutputError(
                f"only {server.viewers} of {len(futures)} bench viewers connected to {server.url} within {timeout_s:g} s: "
                "the machine may be overloaded; try fewer --viewers"
            )
        time.sleep(0.02)


def _viewer_run(config: AppConfig, viewers: int, pool: ProcessPoolExecutor | None, max_fps: float) -> ViewerRun:
    """One pipeline run with a fresh ``WebServer`` sink; ``viewers`` clients from ``pool`` watch it from before the first frame."""
    server = WebServer("127.0.0.1", 0, max_fps=max_fps).start()
    futures: list[Future[StreamCount]] = []
    try:
        if viewers:
            assert pool is not None
            futures = [pool.submit(watch_stream, f"{server.url}stream.mjpg") for _ in range(viewers)]
            _wait_for_viewers(server, futures)
        loop, _, _ = run_pipeline(config, extra_sinks=[server], draw=False)  # the App closes the server: the streams end
    finally:
        server.close()
    try:
        counts = [f.result(timeout=VIEWER_READ_S) for f in futures]
    except FutureTimeout as exc:
        raise OutputError(f"a bench viewer did not finish within {VIEWER_READ_S:g} s after the web view closed") from exc
    rates = [round((c.parts - 1) / c.seconds, 2) if c.parts > 1 and c.seconds > 0 else math.nan for c in counts]
    stages = loop.stages
    return ViewerRun(
        viewers, loop.frames, round(loop.fps, 3), stages["capture"], stages["invoke"], stages["total"], server.encoded, [c.parts for c in counts], rates
    )


def _median(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3) if values else math.nan


def _side(runs: list[ViewerRun]) -> ViewerSide:
    return ViewerSide(
        viewers=runs[0].viewers,
        fps=_median([r.fps for r in runs]),
        invoke_ms=_median([r.invoke.mean for r in runs]),
        invoke_p95_ms=_median([r.invoke.p95 for r in runs]),
        capture_ms=_median([r.capture.mean for r in runs]),
        total_ms=_median([r.total.mean for r in runs]),
        runs=runs,
    )


def compare_viewers(config: AppConfig, viewers: int, rounds: int = 3, max_fps: float = 10.0) -> ViewerComparison:
    """``rounds`` pairs of pipeline runs, without and with ``viewers`` MJPEG clients, alternating which goes first."""
    if not 1 <= viewers <= MAX_VIEWERS:
        raise ConfigError(f"--viewers must be 1..{MAX_VIEWERS}, got {viewers}")
    if rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {rounds}")
    idle: list[ViewerRun] = []
    watched: list[ViewerRun] = []
    # spawn, not fork: the app's threads are running; the pool's processes are reused by every watched run
    with ProcessPoolExecutor(max_workers=viewers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for i in range(rounds):
            for n in (0, viewers) if i % 2 == 0 else (viewers, 0):
                (watched if n else idle).append(_viewer_run(config, n, pool, max_fps))
    a, b = _side(idle), _side(watched)
    return ViewerComparison(
        viewers=viewers,
        rounds=rounds,
        frames=config.max_frames or 0,
        max_fps=max_fps,
        clients=f"{viewers} separate processes reading /stream.mjpg over 127.0.0.1, counting JPEG parts without decoding",
        idle=a,
        watched=b,
        fps_diff_pct=round((b.fps / a.fps - 1.0) * 100.0, 2) if a.fps > 0 else math.nan,
        invoke_diff_pct=round((b.invoke_ms / a.invoke_ms - 1.0) * 100.0, 2) if a.invoke_ms > 0 else math.nan,
    )


def benchmark(
    source: str = SYNTHETIC,
    frames: int = 300,
    *,
    model: Path | None = None,
    threads: int | None = None,
    delegate: str = "cpu",
    device: str | None = None,
    invoke_runs: int = 1000,
    workdir: Path | None = None,
    viewers: int = 0,
    rounds: int = 3,
    draw: bool = False,
    rate: float | None = None,
    rate_seconds: float = 10.0,
    decode: str = "full",
    cameras: int = 0,
    prepare: str = "auto",
) -> BenchReport:
    """Run the measurements (see the module doc; the viewer comparison only with ``viewers``) and return the numbers."""
    if frames < 2:
        raise ConfigError(f"--frames must be at least 2, got {frames}")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="edge-app-bench-") as tmp:
        if source == SYNTHETIC:
            video = synthetic_video(Path(tmp) / "synthetic.avi", frames)
            described = f"synthetic 640x480 MJPG video, {frames} frames"
        else:
            video = Path(source).expanduser()
            described = f"video file {video}"
        count, size = video_info(video)
        n = min(frames, count) if count > 0 else frames
        config = AppConfig(
            model=model,
            threads=threads,
            delegate=delegate,
            device=device,
            source=(str(video),),
            headless=True,
            max_frames=n,
            stats_interval=0.0,
            decode=decode,
            prepare=prepare,
        )
        pipeline, startup, app = run_pipeline(config, draw=draw)
        rss = peak_rss_mb()
        naive = run_naive(video, config, pipeline.frames, draw=draw)
        assert app.classifier is not None
        ceiling = run_decode(video, pipeline.frames, app.classifier.size if decode == "reduced" else None, app.classifier.decode_cover)
        paced = run_paced(config, rate, rate_seconds, Path(tmp)) if rate else None
        several = run_cameras(config, cameras, rate or 30.0, rate_seconds, Path(tmp)) if cameras else None
        compared = compare_viewers(config, viewers, rounds) if viewers else None
    classifier = app.classifier
    assert classifier is not None and app.files is not None and app.acceleration is not None
    bare = StageStats.of([t * 1e3 for t in classifier.time_invoke(invoke_runs)])
    per_frame_ms = 1e3 / pipeline.fps if pipeline.fps > 0 else math.nan
    agree = float(np.mean([a == b for a, b in zip(pipeline.labels, naive.labels, strict=False)])) if naive.labels else math.nan
    rt = get_runtime()
    return BenchReport(
        source=described,
        frame_size=size,
        model=str(app.files.model),
        input_size=(*classifier.size, classifier.channels),
        runtime=f"{rt.name} {rt.version}",
        delegate=app.acceleration.name,
        threads=classifier.threads,
        threads_auto=threads is None,
        pipeline=pipeline,
        naive=naive,
        speedup=round(pipeline.fps / naive.fps, 3) if naive.fps > 0 else math.nan,
        bare_invoke=bare,
        overhead_pct=round((per_frame_ms / bare.mean - 1.0) * 100.0, 1) if bare.mean > 0 else math.nan,
        startup_s=round(startup, 3),
        peak_rss_mb=rss,
        labels_agree=round(agree, 4),
        drawn=draw,
        decode=ceiling,
        paced=paced,
        cameras=several,
        viewers=compared,
    )


# ---------------------------------------------------------------------- output


def format_table(r: BenchReport) -> str:
    h, w, c = r.input_size
    lines = [
        f"edge-app bench: {r.source} ({r.frame_size[0]}x{r.frame_size[1]}), {'drawing the overlay on every frame' if r.drawn else 'headless'}",
        f"model {r.model} ({h}x{w}x{c}) on {r.delegate}, {r.runtime}, threads {r.threads or 'default'}{' (auto)' if r.threads_auto else ''}",
        "",
        f"{'stage (ms)':<12}{'pipeline mean':>15}{'p50':>9}{'p95':>9}{'naive mean':>14}{'p50':>9}{'p95':>9}",
    ]
    for stage in STAGES:
        p, n = r.pipeline.stages[stage], r.naive.stages[stage]
        lines.append(f"{stage:<12}{p.mean:>15.2f}{p.p50:>9.2f}{p.p95:>9.2f}{n.mean:>14.2f}{n.p50:>9.2f}{n.p95:>9.2f}")
    lines += [
        "",
        f"pipeline    {r.pipeline.fps:8.1f} FPS over {r.pipeline.frames} frames "
        "(capture and preprocessing run in their own thread: 'capture' is the wait for a frame)",
        f"naive loop  {r.naive.fps:8.1f} FPS over {r.naive.frames} frames (read -> preprocess -> invoke{' -> draw' if r.drawn else ''} in one thread)",
        f"speed-up    {r.speedup:8.2f}x   (same top-1 label on {r.labels_agree:.0%} of frames)",
        f"bare invoke {r.bare_invoke.mean:8.3f} ms mean, {r.bare_invoke.p50:.3f} p50, {r.bare_invoke.p95:.3f} p95",
        f"overhead    {r.overhead_pct:+8.0f} %  (pipeline time per frame over bare invoke)",
        f"start-up    {r.startup_s:8.2f} s   to the first inference (model load, source open, first frame)",
        f"peak RSS    {r.peak_rss_mb if r.peak_rss_mb is not None else float('nan'):8.1f} MB",
        f"CPU/frame   {r.pipeline.cpu_ms_per_frame:8.3f} ms pipeline, {r.naive.cpu_ms_per_frame:.3f} ms naive loop (process CPU time, every thread)",
        *([f"  by thread  {', '.join(f'{role} {ms:.3f} ms' for role, ms in r.pipeline.thread_cpu_ms.items())} (the pipeline's middle frames; "
           "at 10 ms a tick, so a long run reads best)"] if r.pipeline.thread_cpu_ms else []),
        *([f"  inputs prepared on the {r.pipeline.prepared_on} (the lighter stage, measured while running)"] if r.pipeline.prepared_on else []),
    ]
    if r.decode is not None:
        share = r.pipeline.fps / r.decode.fps if r.decode.fps > 0 else math.nan
        lines.append(
            f"decode only {r.decode.fps:8.1f} FPS, {r.decode.cpu_ms_per_frame:.3f} ms CPU/frame: the ceiling (read and decode, nothing else); "
            f"the pipeline reaches {share:.2f} of it"
        )
    paced = r.paced
    if paced is not None:
        lines.append(
            f"at {paced.rate:g} FPS    {paced.core_pct:8.2f} % of one core "
            f"({paced.cpu_ms_per_frame:.3f} ms CPU/frame over {paced.frames} frames in {paced.seconds:g} s)"
        )
    for run in r.cameras or []:
        how = "one app, one interpreter round-robin" if run.mode == "shared" else "one app and interpreter per camera"
        lines.append(
            f"{run.cameras} cameras {run.rate:g} FPS {run.core_pct:6.2f} % of one core, {run.core_pct_per_camera:.2f} % per camera "
            f"({run.cpu_ms_per_frame:.3f} ms CPU/frame; {how}; "
            f"frames {'/'.join(map(str, run.frames))} in {run.seconds:g} s)"
        )
    if r.repeats is not None:
        lines += ["", *format_repeats(r.repeats)]
    if r.viewers is not None:
        lines += ["", *format_viewers(r.viewers)]
    return "\n".join(lines)


def format_repeats(rep: Repeats) -> list[str]:
    m = rep.median
    lines = [
        f"{rep.runs} runs in a row (the table above is the last; peak RSS is the process's so far)",
        f"{'':<8}{'pipeline FPS':>13}{'naive FPS':>11}{'speed-up':>10}{'bare invoke':>13}{'overhead':>10}{'start-up':>10}{'peak RSS':>10}",
    ]
    rows = zip(rep.pipeline_fps, rep.naive_fps, rep.speedup, rep.bare_invoke_ms, rep.overhead_pct, rep.startup_s, rep.peak_rss_mb, strict=True)
    for i, (p, n, s, b, o, up, rss) in enumerate(rows, 1):
        lines.append(f"{'run ' + str(i):<8}{p:>13.1f}{n:>11.1f}{s:>9.2f}x{b:>10.3f} ms{o:>+9.1f}%{up:>9.2f}s{rss or math.nan:>7.1f} MB")
    median = f"{m['pipeline_fps']:>13.1f}{m['naive_fps']:>11.1f}{m['speedup']:>9.2f}x{m['bare_invoke_ms']:>10.3f} ms{m['overhead_pct']:>+9.1f}%"
    lines.append(f"{'median':<8}{median}")
    return lines


def format_viewers(v: ViewerComparison) -> list[str]:
    parts = [p for run in v.watched.runs for p in run.parts]
    rates = [x for run in v.watched.runs for x in run.stream_fps if math.isfinite(x)]
    jpegs = _median([float(run.encoded) for run in v.watched.runs])
    lines = [
        f"web view, {v.rounds} x 2 alternating runs of {v.frames} frames (medians); viewers: {v.clients}",
        f"{'':<12}{'FPS':>9}{'invoke mean':>13}{'p95':>9}{'capture wait':>14}{'total mean':>12}  (ms)",
    ]
    for name, side in (("0 viewers", v.idle), (f"{v.viewers} viewers", v.watched)):
        lines.append(f"{name:<12}{side.fps:>9.1f}{side.invoke_ms:>13.3f}{side.invoke_p95_ms:>9.3f}{side.capture_ms:>14.3f}{side.total_ms:>12.3f}")
    lines += [
        f"{'difference':<12}{v.fps_diff_pct:>+8.1f}%{v.invoke_diff_pct:>+12.1f}%",
        f"FPS per run  0 viewers: {', '.join(f'{r.fps:.1f}' for r in v.idle.runs)}; {v.viewers} viewers: {', '.join(f'{r.fps:.1f}' for r in v.watched.runs)}",
        f"streamed    {jpegs:.0f} JPEGs per run (max {v.max_fps:g}/s, shared); each viewer got {min(parts)}-{max(parts)} parts"
        + (f", {statistics.median(rates):.1f}/s" if rates else ""),
    ]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=SYNTHETIC, metavar="FILE|synthetic", help="video file to run on (default: a synthetic 640x480 video)")
    parser.add_argument("--frames", type=int, default=300, metavar="N", help="frames to process (default: 300)")
    parser.add_argument("--model", type=Path, metavar="PATH", help="model folder or .tflite file (default: the shipped model)")
    parser.add_argument("--threads", type=int, metavar="N", help="interpreter CPU threads (default: edge-app's: one for a model "
                        "faster than 1 ms a frame on one thread, else the usable cores, at most 4)")
    parser.add_argument("--delegate", choices=DELEGATES, default="cpu", help="cpu, edgetpu or auto (default: cpu)")
    parser.add_argument("--device", metavar="usb[:N]|pci[:N]", help="Edge TPU device")
    parser.add_argument("--invoke-runs", type=int, default=1000, metavar="N", help="bare invoke() repetitions (default: 1000)")
    parser.add_argument(
        "--viewers",
        type=int,
        default=0,
        metavar="N",
        help="also compare the pipeline with a web view and no viewer against N MJPEG viewers (separate processes; default: 0, off)",
    )
    parser.add_argument("--rounds", type=int, default=3, metavar="R", help="with --viewers: pairs of runs, alternating the order (default: 3)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="run the whole benchmark N times and also report the medians (default: 1)")
    parser.add_argument("--draw", action="store_true", help="draw the overlay on every frame in both loops, as a display would (default: headless)")
    parser.add_argument(
        "--rate", type=float, metavar="FPS", help="also run the pipeline paced at FPS frames a second (a camera) and report its share of one core"
    )
    parser.add_argument(
        "--decode", choices=("full", "reduced"), default="full", help="the pipeline's decode (edge-app --decode); the naive loop always decodes full frames"
    )
    parser.add_argument(
        "--prepare", choices=("auto", "capture", "loop"), default="auto", help="the thread that prepares the pipeline's inputs (edge-app --prepare)"
    )
    parser.add_argument(
        "--cameras", type=int, default=0, metavar="N",
        help="also run N paced synthetic cameras (at --rate, default 30) in one process, one interpreter shared and one per camera, and report CPU per camera",
    )
    parser.add_argument("--rate-seconds", type=float, default=10.0, metavar="S", help="with --rate: how long the paced run lasts (default: 10)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """``edge-app bench`` after argument parsing: print the table or JSON; the exit code."""
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.invoke_runs < 1:
        raise ConfigError(f"--invoke-runs must be at least 1, got {args.invoke_runs}")
    if not 0 <= args.viewers <= MAX_VIEWERS:
        raise ConfigError(f"--viewers must be 0..{MAX_VIEWERS}, got {args.viewers}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}")
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {args.repeat}")
    if args.rate is not None and not 0 < args.rate <= 240:
        raise ConfigError(f"--rate must be above 0 and at most 240 frames a second, got {args.rate}")
    if not 0 <= args.cameras <= MAX_CAMERAS:
        raise ConfigError(f"--cameras must be 0..{MAX_CAMERAS}, got {args.cameras}")
    if args.rate_seconds <= 0:
        raise ConfigError(f"--rate-seconds must be positive, got {args.rate_seconds}")
    reports = [
        benchmark(
            args.source,
            args.frames,
            model=args.model,
            threads=args.threads,
            delegate=args.delegate,
            device=args.device,
            invoke_runs=args.invoke_runs,
            viewers=args.viewers if i == args.repeat - 1 else 0,  # the viewer comparison repeats itself (--rounds)
            rounds=args.rounds,
            draw=args.draw,
            rate=args.rate if i == args.repeat - 1 else None,
            rate_seconds=args.rate_seconds,
            decode=args.decode,
            cameras=args.cameras if i == args.repeat - 1 else 0,
            prepare=args.prepare,
        )
        for i in range(args.repeat)
    ]
    report = reports[-1]
    if len(reports) > 1:
        report.repeats = Repeats.of(reports)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_table(report))
    return 0
