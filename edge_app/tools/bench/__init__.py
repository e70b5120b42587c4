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

Here: ``benchmark`` (all of it, on one video) and the subcommand's flags; ``loops.py`` times each loop,
``viewers.py`` runs the viewer comparison, ``results.py`` holds the numbers and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from edge_app.config import AppConfig
from edge_app.delegates import DELEGATES
from edge_app.errors import ConfigError
from edge_app.runtime import get_runtime
from edge_app.tools.bench.loops import peak_rss_mb, run_cameras, run_decode, run_naive, run_paced, run_pipeline
from edge_app.tools.bench.results import BenchReport, Repeats, StageStats, format_table
from edge_app.tools.bench.viewers import MAX_VIEWERS, compare_viewers
from edge_app.tools.video import synthetic_video, video_info

DESCRIPTION = "Benchmark the recognition pipeline (per-stage latency, FPS, memory) against the naive single-thread loop and bare invoke()."
SYNTHETIC = "synthetic"
MAX_CAMERAS = 8


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
        config = AppConfig.from_flags(
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=SYNTHETIC, metavar="FILE|synthetic", help="video file to run on (default: a synthetic 640x480 video)")
    parser.add_argument("--frames", type=int, default=300, metavar="N", help="frames to process (default: 300)")
    parser.add_argument("--model", type=Path, metavar="PATH", help="model folder, .tflite file or shipped bundle name (default: imagenet, edge-app's default)")
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
