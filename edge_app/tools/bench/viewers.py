"""``edge-app bench --viewers N``: the headless pipeline with a ``WebServer`` sink, alternately with no viewer and
with N MJPEG viewers on ``/stream.mjpg``. The viewers are separate processes (so their socket reads do not take
the app's GIL) running ``edge_app.tools.mjpeg.watch``: they count the JPEG parts without decoding them."""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from edge_app.config import AppConfig
from edge_app.errors import ConfigError, OutputError
from edge_app.tools.bench.loops import run_pipeline
from edge_app.tools.bench.results import ViewerComparison, ViewerRun, ViewerSide, median_of
from edge_app.tools.mjpeg import StreamCount, watch
from edge_app.web import WebServer

MAX_VIEWERS = 16
VIEWER_CONNECT_S = 60.0  # spawning the viewer processes and connecting, on a loaded machine
VIEWER_READ_S = 60.0  # a viewer's socket timeout: covers model load and source open before the first frame


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
            futures = [pool.submit(watch, f"{server.url}stream.mjpg", VIEWER_READ_S) for _ in range(viewers)]
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


def _side(runs: list[ViewerRun]) -> ViewerSide:
    return ViewerSide(
        viewers=runs[0].viewers,
        fps=median_of([r.fps for r in runs]),
        invoke_ms=median_of([r.invoke.mean for r in runs]),
        invoke_p95_ms=median_of([r.invoke.p95 for r in runs]),
        capture_ms=median_of([r.capture.mean for r in runs]),
        total_ms=median_of([r.total.mean for r in runs]),
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
        frames=config.run.max_frames or 0,
        max_fps=max_fps,
        clients=f"{viewers} separate processes reading /stream.mjpg over 127.0.0.1, counting JPEG parts without decoding",
        idle=a,
        watched=b,
        fps_diff_pct=round((b.fps / a.fps - 1.0) * 100.0, 2) if a.fps > 0 else math.nan,
        invoke_diff_pct=round((b.invoke_ms / a.invoke_ms - 1.0) * 100.0, 2) if a.invoke_ms > 0 else math.nan,
    )

