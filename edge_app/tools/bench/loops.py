"""The loops ``edge-app bench`` times: the real ``App`` (headless, paced, several cameras), the naive single-thread
loop of the TensorFlow Lite Raspberry Pi example and the decode-only ceiling; CPU time by thread and peak RSS."""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edge_app.app import App
from edge_app.config import AppConfig, with_flags
from edge_app.delegates import load_classifier
from edge_app.model import resolve_model, threshold_in_force, top_k
from edge_app.notify import Notifier
from edge_app.outputs import FrameResult, Sink
from edge_app.outputs.draw import draw_overlay
from edge_app.sources import OpenCVSource, spec_from_args
from edge_app.tools.bench.results import STAGES, CamerasRun, LoopResult, PacedRun, StageStats
from edge_app.tools.video import synthetic_video


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
    recorder = _Recorder(draw, config.run.max_frames or 0)
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
    paced = with_flags(config, {"source": [str(video)], "realtime": True, "max_frames": frames})
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
    base = with_flags(config, {"realtime": True, "max_frames": None})
    runs = []
    for mode in ("shared", "per-source"):
        if mode == "shared":
            apps = [App(with_flags(base, {"source": [f"camera{i}={v}" for i, v in enumerate(videos)]}), handle_signals=False, notifier=Notifier({}))]
        else:
            apps = [App(with_flags(base, {"source": [str(v)]}), handle_signals=False, notifier=Notifier({})) for v in videos]
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
    m = config.model
    files = resolve_model(m.path, m.labels)
    classifier, _ = load_classifier(files, m.delegate, m.device, m.threads)
    threshold = threshold_in_force(config.classification.threshold, classifier.threshold).value  # the app's rule
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
            top = top_k(scores, classifier.labels, config.classification.top_k, threshold)
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
