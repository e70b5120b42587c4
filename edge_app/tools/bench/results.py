"""What ``edge-app bench`` measures, as dataclasses (``BenchReport.to_json`` for ``--json``), and the table it prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

STAGES = ("capture", "preprocess", "invoke", "draw", "total")


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
            median={k: median_of(v) for k, v in figures.items()},
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



def median_of(values: list[float]) -> float:
    return round(float(statistics.median(values)), 3) if values else math.nan



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
    jpegs = median_of([float(run.encoded) for run in v.watched.runs])
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

