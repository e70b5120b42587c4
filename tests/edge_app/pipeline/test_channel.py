"""One source's channel: its capture thread on a real image folder, its FPS, its status, and the reduced-decode policy."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from edge_app.pipeline.channel import Channel, decode_reduced, full_frame_keepers, per_source_path, recent_fps, reduced_spec
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.sources import SourceSpec, spec_from_args
from edge_app.zones import parse_zones


def channel(spec: SourceSpec, name: str = "cam") -> Channel:
    return Channel(name, spec, ZoneClassifier([], smoothing=1.0, debounce=None, k=3, threshold=0.0).new_state())


def test_per_source_paths() -> None:
    assert per_source_path(Path("/var/log/results.jsonl"), "door") == Path("/var/log/results-door.jsonl")
    assert per_source_path(Path("snaps"), "yard") == Path("snaps-yard")


def test_fps_over_the_last_frames_and_zero_once_frames_stop() -> None:
    ch = channel(SourceSpec(kind="opencv", target="clip.avi"))
    start = time.perf_counter()
    assert ch.tick(start) is None  # one frame has no rate
    rates = [ch.tick(start + 0.1 * i) for i in range(1, 40)]
    assert rates[0] == pytest.approx(10.0) and rates[-1] == pytest.approx(10.0) and len(ch.done) == 30
    ch.fps = rates[-1] or 0.0
    assert ch.current_fps() == pytest.approx(10.0)  # the newest frame is recent
    ch.done = deque([time.perf_counter() - 5.5, time.perf_counter() - 5.0], maxlen=30)
    assert ch.current_fps() == 0.0  # nothing for 5 s: 0, not the last rate
    assert recent_fps(deque(), 10.0) == 0.0
    assert recent_fps(deque([time.perf_counter() - 1.5]), 0.5) == 0.5  # a 0.5 fps source: 1.5 s without a frame is normal


def test_a_channel_captures_a_folder_and_reports_it(photo_folder: Path, photos: list[np.ndarray]) -> None:
    ch = channel(spec_from_args(source=str(photo_folder)), "shelf")
    before = ch.status()
    assert before["source"] == ch.spec.describe() and before["live"] is None and before["frames"] == 0 and before["label"] is None
    ch.start(ch.spec, None, None, cancel=threading.Event())
    try:
        assert ch.grabber is not None
        got = []
        while (f := ch.grabber.get(timeout=2.0)) is not None:
            got.append(f)
        assert len(got) == len(photos) and all(np.array_equal(f.image, p) for f, p in zip(got, photos, strict=True))
        assert got[0].input is None  # nothing prepared on the capture thread: no preparation given
        assert not ch.new_capture()  # a folder never reconnects
        status = ch.status()
        assert status["live"] is False and status["captured"] == len(photos) and status["source"] == ch.grabber.name
    finally:
        ch.stop()
    assert ch.grabber.ended


def test_reduced_decode_policy(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_app.app"):
        assert not decode_reduced("full", [])
        assert decode_reduced("reduced", parse_zones(["door:0.5,0,0.5,1"]))  # fractional zones scale with the frame
        assert not caplog.records
        assert not decode_reduced("reduced", parse_zones(["door:10,10,50,50"]))
    assert [r.getMessage() for r in caplog.records] == [
        "decode = reduced is ignored: --zone in pixels needs the full frames, so they are decoded at full size"]
    caplog.clear()
    keeps = full_frame_keepers(window=False, http="0.0.0.0:8080", snapshots=None, collect=Path("inbox"), zone=())
    assert keeps == ["--http", "--collect"]
    usb, csi = channel(SourceSpec(kind="opencv", target=0)), channel(SourceSpec(kind="picamera2", target=0), "csi")
    with caplog.at_level(logging.WARNING, logger="edge_app.app"):
        assert usb.reduced(keeps) and csi.reduced([])  # MJPEG hands the outputs its compressed frames; nothing keeps picamera2's
        assert not csi.reduced(keeps)
    assert [r.getMessage() for r in caplog.records] == [
        "csi: decode = reduced is ignored: --http and --collect needs its full frames and picamera2's lores stream has no full-size "
        "frame behind it, so the main stream feeds the model"]
    spec = reduced_spec(usb.spec, (32, 32), 1.25, parse_zones(["a:0,0,0.5,0.25"]))
    assert (spec.reduce_to, spec.reduce_regions, spec.reduce_cover) == ((32, 32), ((0.25, 0.5),), 1.25)
    assert reduced_spec(usb.spec, (32, 32), 1.0, []).reduce_regions == ((1.0, 1.0),)
