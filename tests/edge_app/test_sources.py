"""Capture: real OpenCV VideoCapture on real videos written from real images, real image folders,
a real MJPEG HTTP stream on 127.0.0.1 that dies, comes back and stalls. The only fake is the
picamera2 module (no CSI camera exists here), behind the real ``Picamera2Source``."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.app import App
from edge_app.config import AppConfig
from edge_app.errors import ConfigError, ExitCode, SourceError
from edge_app.preprocess import preprocess
from edge_app.sources import (
    SOURCES,
    FolderSource,
    Frame,
    FrameGrabber,
    OpenCVSource,
    Picamera2Source,
    SourceSpec,
    open_source,
    spec_from_args,
)
from tests.edge_app.helpers import wait_until
from tests.edge_app.mjpeg_server import MJPEGServer

pytestmark = pytest.mark.timeout(60)

FAST_BACKOFF = (0.1, 0.8)


def _grey(images: np.ndarray) -> np.ndarray:
    return images[..., 0] if images.shape[-1] == 1 else np.stack([cv2.cvtColor(i, cv2.COLOR_RGB2GRAY) for i in images])


def identify(frame: np.ndarray, originals: np.ndarray) -> int:
    """Which original (N, h, w) grey image a decoded, upscaled video frame shows (nearest by mean abs error)."""
    h, w = originals.shape[1:3]
    small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (w, h), interpolation=cv2.INTER_AREA).astype(np.int16)
    errors = np.abs(originals.astype(np.int16) - small).mean(axis=(1, 2))
    best = int(np.argmin(errors))
    assert errors[best] < 12, f"frame matches no source image (best error {errors[best]:.1f})"
    return best


def drain(grabber: FrameGrabber, limit_s: float = 20.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + limit_s
    while not grabber.ended:
        assert time.monotonic() < deadline, "grabber never ended"
        frame = grabber.get(timeout=1.0)
        if frame is not None:
            frames.append(frame)
    return frames


def open_files() -> set[str]:
    """Paths this process holds open (Linux /proc)."""
    fds = Path("/proc/self/fd")
    paths = set()
    for fd in fds.iterdir():
        try:
            paths.add(str(fd.readlink()))
        except OSError:
            continue
    return paths


def timed_stop(grabber: FrameGrabber) -> float:
    start = time.monotonic()
    grabber.stop()
    return time.monotonic() - start


@pytest.fixture(scope="module")
def fashion(fashion_mnist_test: Dataset) -> Dataset:
    """40 distinct real Fashion-MNIST images (4 of each class)."""
    idx = np.concatenate([np.flatnonzero(fashion_mnist_test.y == c)[:4] for c in range(10)])
    return fashion_mnist_test.subset(np.sort(idx))


@pytest.fixture(scope="module")
def stream_frames(fashion: Dataset) -> list[np.ndarray]:
    return [cv2.resize(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), (320, 240), interpolation=cv2.INTER_NEAREST) for img in fashion.x[:10]]


@pytest.fixture
def server(stream_frames):
    srv = MJPEGServer(stream_frames, fps=30).start()
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------------------ specs


def test_spec_from_args_picks_the_backend(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    assert spec_from_args() == SourceSpec(kind="opencv", target=0)
    assert spec_from_args(camera=2, width=640, height=480, fps=15).target == 2
    assert spec_from_args(source="1").target == 1
    spec = spec_from_args(source=str(video), loop=True, realtime=True)
    assert (spec.kind, spec.target, spec.loop, spec.realtime, spec.is_stream) == ("opencv", str(video), True, True, False)
    assert spec.describe() == f"video file {video}"
    stream = spec_from_args(source="rtsp://admin:secret@10.0.0.5:554/live")
    assert stream.is_stream and stream.kind == "opencv"
    assert "secret" not in stream.describe() and "admin:***@10.0.0.5:554" in stream.describe()
    assert spec_from_args(source="http://cam.local/video.mjpg").is_stream
    assert spec_from_args(source=tmp_path).kind == "folder"
    pi = spec_from_args(camera=1, picamera=True, width=320, height=240)
    assert (pi.kind, pi.target, pi.width, pi.height) == ("picamera2", 1, 320, 240)
    assert isinstance(SOURCES[spec.kind](spec), OpenCVSource)
    assert isinstance(SOURCES["folder"](spec_from_args(source=tmp_path)), FolderSource)
    assert isinstance(SOURCES["picamera2"](pi), Picamera2Source)
    assert SOURCES["opencv"](stream).live and SOURCES["opencv"](spec_from_args(camera=0)).live
    assert not SOURCES["opencv"](spec).live


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"camera": 0, "source": "a.mp4"}, "mutually exclusive"),
        ({"picamera": True, "source": "a.mp4"}, "mutually exclusive"),
        ({"source": ""}, "--source is empty"),
        ({"camera": 0, "width": 0}, "width must be positive"),
        ({"camera": 0, "read_timeout_s": 0}, "read_timeout_s must be positive"),
    ],
)
def test_spec_from_args_rejects_bad_combinations(kwargs, words) -> None:
    with pytest.raises(ConfigError, match=words):
        spec_from_args(**kwargs)
    with pytest.raises(ConfigError, match="unknown source kind 'usb'"):
        SourceSpec(kind="usb")


# ------------------------------------------------------------------------------------------ files


def test_video_file_delivers_every_frame_in_order_despite_a_slow_consumer(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "clip.avi", fashion.x)
    originals = _grey(fashion.x)
    grabber = FrameGrabber(spec_from_args(source=str(video)), queue_size=4).start()
    assert not grabber.live and grabber.source_fps == pytest.approx(30.0)
    time.sleep(0.3)  # the reader fills the 4-slot queue and must wait, not drop
    assert grabber.stats.captured <= 5
    frames = drain(grabber)
    stats = grabber.stats
    assert [f.index for f in frames] == list(range(len(fashion)))
    assert [identify(f.image, originals) for f in frames] == list(range(len(fashion)))
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    assert (stats.captured, stats.delivered, stats.dropped, stats.reconnects) == (40, 40, 0, 0)
    assert grabber.get(timeout=5.0) is None  # at the end get() returns at once
    assert timed_stop(grabber) < 1.0


def test_prepare_runs_on_the_capture_thread_and_each_frame_carries_its_model_input(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "clip.avi", fashion.x[:12])
    threads: set[str] = set()

    def prepare(image: np.ndarray) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return preprocess(image, (28, 28), channels=1)

    with FrameGrabber(spec_from_args(source=str(video)), prepare=prepare) as grabber:
        frames = drain(grabber)
    assert len(frames) == 12 and threads and threading.current_thread().name not in threads
    for f in frames:
        assert f.input is not None and f.prepare_ms > 0
        np.testing.assert_array_equal(f.input, preprocess(f.image, (28, 28), channels=1))  # the frame's own input, not a neighbour's
    assert [identify(f.image, _grey(fashion.x[:12])) for f in frames] == list(range(12))


def test_a_prepare_that_fails_leaves_the_frame_to_the_consumer_and_warns_once(tmp_path, write_video, fashion, caplog) -> None:
    video = write_video(tmp_path / "clip.avi", fashion.x[:6])

    def broken(image: np.ndarray) -> np.ndarray:
        raise ValueError("bad frame geometry")

    with caplog.at_level(logging.WARNING, logger="edge_app.sources"), FrameGrabber(spec_from_args(source=str(video)), prepare=broken) as grabber:
        frames = drain(grabber)
    assert len(frames) == 6 and all(f.input is None and f.prepare_ms == 0.0 for f in frames)  # nothing lost
    assert sum("bad frame geometry" in r.getMessage() for r in caplog.records) == 1


def test_video_file_loops(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "five.avi", fashion.x[:5])
    originals = _grey(fashion.x[:5])
    with FrameGrabber(spec_from_args(source=str(video), loop=True)) as grabber:
        frames = [f for _, f in zip(range(13), grabber.frames(), strict=False)]
        assert not grabber.ended
    assert [identify(f.image, originals) for f in frames] == [i % 5 for i in range(13)]
    assert [f.index for f in frames] == list(range(13))
    assert grabber.stats.dropped == 0 and grabber.ended


def test_truncated_video_ends_cleanly_with_the_frames_before_the_damage(tmp_path, write_video, fashion, caplog) -> None:
    full = write_video(tmp_path / "full.avi", fashion.x[:30])
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    originals = _grey(fashion.x[:30])
    with caplog.at_level(logging.WARNING, logger="edge_app.sources"):
        grabber = FrameGrabber(spec_from_args(source=str(cut))).start()
        frames = drain(grabber)
    grabber.stop()
    assert 5 < len(frames) < 30
    # every whole frame, in order; the last one may be the frame the cut went through, decoded as far as it goes
    assert [identify(f.image, originals) for f in frames[:-1]] == list(range(len(frames) - 1))
    last = cv2.cvtColor(frames[-1].image, cv2.COLOR_BGR2GRAY)
    expected = cv2.resize(originals[len(frames) - 1], (640, 480), interpolation=cv2.INTER_NEAREST)
    assert np.abs(last[:48].astype(int) - expected[:48]).mean() < 12  # its top rows are intact
    assert any("truncated or corrupt" in r.getMessage() and f"after {len(frames)} of the 30" in r.getMessage() for r in caplog.records)
    assert grabber.stats.last_error is None  # a clean end, not a failure


def test_realtime_paces_a_file_at_its_native_rate_and_the_newest_frame_wins(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "paced.avi", fashion.x[:12], fps=20.0)
    grabber = FrameGrabber(spec_from_args(source=str(video), realtime=True)).start()
    start = time.monotonic()
    first = grabber.get(timeout=2.0)
    assert first is not None
    time.sleep(0.35)  # a slow consumer: the frames captured meanwhile replace each other
    frames = [first, *drain(grabber)]
    elapsed = time.monotonic() - start
    stats = grabber.stats
    grabber.stop()
    assert elapsed >= 0.5  # 12 frames at 20 fps take 0.55 s; unpaced they decode in a few ms
    assert stats.captured == 12 and stats.dropped >= 3
    assert stats.delivered + stats.dropped == 12 and len(frames) == stats.delivered
    assert frames[-1].index == 11  # the newest frame, never a stale one, is what is left


def test_folder_source_reads_images_in_name_order_and_skips_a_corrupt_file(tmp_path, cifar10_val, caplog) -> None:
    images = cifar10_val.x[:6]
    for i, img in enumerate(images):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / "img_002b.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="edge_app.sources"):
        grabber = FrameGrabber(spec_from_args(source=str(tmp_path))).start()
        frames = drain(grabber)
    grabber.stop()
    assert len(frames) == 6
    for frame, img in zip(frames, images, strict=True):  # PNG is lossless: exact pixels, BGR order
        assert np.array_equal(frame.image, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert grabber.stats.skipped == 1 and grabber.stats.captured == 6
    assert any("img_002b.jpg" in r.getMessage() and "not a readable image" in r.getMessage() for r in caplog.records)


def test_folder_source_loops_and_counts_skips_per_pass(tmp_path, cifar10_val) -> None:
    for i, img in enumerate(cifar10_val.x[:3]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    (tmp_path / "1b.png").write_bytes(b"")
    with FrameGrabber(spec_from_args(source=str(tmp_path), loop=True)) as grabber:
        frames = [f for _, f in zip(range(7), grabber.frames(), strict=False)]
        assert wait_until(lambda: grabber.stats.skipped >= 2, 2.0)
    assert [int(np.array_equal(f.image, cifar10_val.x[f.index % 3])) for f in frames] == [1] * 7


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: spec_from_args(source=str(d / "missing.mp4")), "video file .*missing.mp4 does not exist: check the path"),
        (lambda d: SourceSpec(kind="folder", target=str(d / "nope")), "image folder .*nope does not exist"),
        (lambda d: spec_from_args(source=str(d / "empty")), "has no images"),
        (lambda d: spec_from_args(source=str(d / "junk.avi")), "could not be decoded: .*re-encode it"),
        (lambda d: spec_from_args(source=str(d / "zero.mp4")), "could not be decoded"),
        (lambda d: spec_from_args(camera=7), r"camera 7 could not be opened: check the cable, `v4l2-ctl --list-devices`"),
        (lambda d: spec_from_args(source="http://127.0.0.1:9/none.mjpg", open_timeout_s=1), r"stream http://127.0.0.1:9/none.mjpg could not be opened"),
    ],
)
def test_sources_that_cannot_open_fail_at_start_with_one_actionable_line(tmp_path, make, words) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (tmp_path / "zero.mp4").write_bytes(b"")
    spec = make(tmp_path)
    start = time.monotonic()
    with pytest.raises(SourceError, match=words) as info:
        FrameGrabber(spec).start()
    assert time.monotonic() - start < 3.0
    assert "\n" not in str(info.value) and info.value.exit_code == ExitCode.SOURCE
    with pytest.raises(SourceError, match=words):
        open_source(spec)


# ------------------------------------------------------------------------------------------ live


def test_live_stream_keeps_only_the_newest_frame_and_counts_drops(server, stream_frames) -> None:
    originals = _grey(np.stack(stream_frames))
    grabber = FrameGrabber(spec_from_args(source=server.url)).start()
    assert grabber.live
    frames = []
    ages = []
    for _ in range(5):
        time.sleep(0.25)  # a slow model
        frame = grabber.get(timeout=2.0)
        assert frame is not None
        ages.append(time.monotonic() - frame.timestamp)
        frames.append(frame)
    stats = grabber.stats
    assert timed_stop(grabber) < 1.0
    assert server.wait_for_connections(0), "the stream connection was not released"
    assert all(identify(f.image, originals) >= 0 for f in frames)
    gaps = np.diff([f.index for f in frames])
    assert (gaps >= 3).all(), f"frames were queued, not replaced: index gaps {gaps}"
    assert max(ages) < 0.2, f"stale frames handed out: ages {ages}"
    assert stats.dropped >= 15 and stats.captured - stats.delivered - stats.dropped in (0, 1)


def test_live_stream_that_dies_is_reopened_with_backoff_and_the_app_keeps_running(server, stream_frames) -> None:
    spec = spec_from_args(source=server.url, open_timeout_s=1.0, read_timeout_s=2.0)
    grabber = FrameGrabber(spec, backoff_s=FAST_BACKOFF).start()
    try:
        before = grabber.get(timeout=2.0)
        assert before is not None
        server.stop()  # the camera disappears
        assert wait_until(lambda: grabber.stats.open_failures >= 2, 5.0), grabber.stats
        assert not grabber.stats.connected
        for _ in range(3):  # the consumer is never stuck while the source is away
            start = time.monotonic()
            grabber.get(timeout=0.2)
            assert time.monotonic() - start < 0.5
        server.start()  # ... and comes back on the same address
        assert wait_until(lambda: grabber.stats.reconnects == 1, 5.0), grabber.stats
        after = grabber.get(timeout=2.0)
        assert after is not None and after.index > before.index
        assert after.timestamp > before.timestamp and grabber.stats.connected
        assert f"stream {server.url} could not be opened" in (grabber.stats.last_error or "")
    finally:
        assert timed_stop(grabber) < 1.0


def test_stalled_stream_is_abandoned_by_the_watchdog_and_get_never_hangs(server) -> None:
    spec = spec_from_args(source=server.url, open_timeout_s=1.0, read_timeout_s=1.0)
    grabber = FrameGrabber(spec, backoff_s=FAST_BACKOFF).start()
    try:
        assert grabber.get(timeout=2.0) is not None
        server.sending.clear()  # connection open, no bytes: read() blocks inside FFmpeg
        time.sleep(0.1)
        grabber.get(timeout=0.1)  # take whatever was in flight
        waits = []
        for _ in range(6):
            start = time.monotonic()
            frame = grabber.get(timeout=0.25)
            waits.append(time.monotonic() - start)
            assert frame is None
        assert max(waits) < 0.6
        assert wait_until(lambda: grabber.stats.stalls >= 1, 3.0), grabber.stats
        server.sending.set()
        assert wait_until(lambda: grabber.stats.reconnects >= 1, 6.0), grabber.stats
        assert grabber.get(timeout=2.0) is not None
    finally:
        assert timed_stop(grabber) < 1.0


def test_deleted_file_behind_a_live_source_is_retried_until_it_returns(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "cam.avi", fashion.x[:3])
    data = video.read_bytes()
    spec = SourceSpec(kind="opencv", target=str(video), live=True)
    grabber = FrameGrabber(spec, backoff_s=FAST_BACKOFF).start()
    try:
        video.unlink()  # already open: this pass finishes, the reopen finds nothing
        assert wait_until(lambda: grabber.stats.open_failures >= 2, 5.0), grabber.stats
        assert "does not exist" in (grabber.stats.last_error or "")
        video.write_bytes(data)
        assert wait_until(lambda: grabber.stats.reconnects >= 1, 5.0), grabber.stats
        seen = grabber.stats.captured
        assert wait_until(lambda: grabber.stats.captured > seen, 3.0)
    finally:
        assert timed_stop(grabber) < 1.0


def test_stop_returns_within_a_second_while_the_reader_waits_on_a_full_queue(tmp_path, write_video, fashion) -> None:
    video = write_video(tmp_path / "clip.avi", fashion.x)
    grabber = FrameGrabber(spec_from_args(source=str(video)), queue_size=2).start()
    assert wait_until(lambda: grabber.stats.captured >= 3, 2.0)
    assert str(video) in open_files()
    assert timed_stop(grabber) < 1.0
    assert str(video) not in open_files(), "stop() did not release the video file"
    assert grabber.ended
    start = time.monotonic()
    assert grabber.get(timeout=1.0) is None and time.monotonic() - start < 0.1


# ------------------------------------------------------------------------------------------ picamera2


class FakePicamera2:
    """Just enough of picamera2.Picamera2 for ``Picamera2Source``: hands out real images in BGR at the configured size."""

    instances: ClassVar[list[FakePicamera2]] = []
    images: ClassVar[list[np.ndarray]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num != 0:
            raise IndexError("list index out of range")  # what picamera2 raises for a camera that is not there
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.count = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict, lores: dict | None = None, controls: dict | None = None) -> dict:
        return {"main": dict(main), **({"lores": dict(lores)} if lores else {}), "controls": dict(controls or {})}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.started and self.config is not None and name in self.config
        time.sleep(1 / 60)
        w, h = self.config[name]["size"]
        img = self.images[self.count % len(self.images)]
        self.count += 1
        bgr = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (w, h), interpolation=cv2.INTER_NEAREST if name == "main" else cv2.INTER_AREA)
        return bgr if name == "main" else cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # lores: planar YUV420, as libcamera gives it

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


class Keep:
    """A sink that keeps (frame index, top-1 label) of every result."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None]] = []

    def write(self, image: np.ndarray, result) -> None:
        self.seen.append((result.index, result.label))

    def close(self) -> None:
        pass


@pytest.fixture
def fake_picamera2(monkeypatch, cifar10_val):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    FakePicamera2.instances = []
    FakePicamera2.images = list(cifar10_val.x[:4])
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picamera2_source_configures_bgr_frames_of_the_requested_size(fake_picamera2, cifar10_val) -> None:
    spec = spec_from_args(picamera=True, width=320, height=240, fps=15)
    with FrameGrabber(spec) as grabber:
        assert grabber.live
        frame = grabber.get(timeout=2.0)
        assert frame is not None
    camera = fake_picamera2.instances[0]
    assert camera.config == {"main": {"size": (320, 240), "format": "RGB888"}, "controls": {"FrameRate": 15.0}}
    assert frame.image.shape == (240, 320, 3)
    expected = cv2.resize(cv2.cvtColor(cifar10_val.x[frame.index % 4], cv2.COLOR_RGB2BGR), (320, 240), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(frame.image, expected)
    assert camera.closed and not camera.started  # stop() released the camera


def test_picamera2_feeds_the_model_from_the_isp_scaled_lores_stream_when_decoding_reduced(fake_picamera2, cifar10_val, default_model) -> None:
    spec = replace(spec_from_args(picamera=True), reduce_to=(32, 32))  # what --decode reduced asks for a 32x32 model
    with FrameGrabber(spec) as grabber:
        frame = grabber.get(timeout=2.0)
        assert frame is not None
    camera = fake_picamera2.instances[0]
    assert camera.config["lores"] == {"size": (64, 48), "format": "YUV420"} and camera.config["main"]["size"] == (640, 480)
    assert frame.image.shape == (48, 64, 3)  # the CPU never sees a full-size frame
    expected = cv2.resize(cv2.cvtColor(cifar10_val.x[frame.index % 4], cv2.COLOR_RGB2BGR), (64, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.image.astype(int) - expected).mean() < 6  # YUV420 round trip: chroma at half resolution
    # the whole app on it: headless, reduced decode, the same top-1 as the main stream on every frame
    labels = {}
    for decode in ("full", "reduced"):
        keep = Keep()
        fake_picamera2.instances = []
        config = AppConfig.from_flags(picamera=True, headless=True, decode=decode, max_frames=8, stats_interval=0.0, threads=1, model=default_model)
        App(config, extra_sinks=[keep], handle_signals=False).run()
        assert ("lores" in fake_picamera2.instances[0].config) == (decode == "reduced")
        labels[decode] = dict(keep.seen)  # frame index -> top-1 (the fake shows image index % 4)
    common = labels["full"].keys() & labels["reduced"].keys()
    assert len(common) >= 4 and all(labels["full"][i] == labels["reduced"][i] for i in common)


def test_picamera2_keeps_its_main_stream_when_an_output_shows_frames(fake_picamera2, tmp_path, caplog) -> None:
    """Its lores stream has no full frame behind it (unlike MJPEG packets), so snapshots get main-stream frames."""
    caplog.set_level(logging.WARNING)
    config = AppConfig.from_flags(picamera=True, headless=True, decode="reduced", max_frames=6, stats_interval=0.0, threads=1,
                                  snapshots=tmp_path / "shots", snapshot_min_score=0.0, snapshot_interval=0.0, threshold=0.0)
    App(config, handle_signals=False).run()  # threshold 0: every frame reports its top class, so snapshots are taken
    assert "lores" not in fake_picamera2.instances[0].config
    assert any("picamera2's lores stream has no full-size frame behind it" in r.getMessage() for r in caplog.records)
    shots = sorted((tmp_path / "shots").glob("*.jpg"))
    assert shots and all(cv2.imread(str(p)).shape == (480, 640, 3) for p in shots)


def test_picamera2_missing_module_or_camera_is_one_clear_line(monkeypatch, fake_picamera2) -> None:
    with pytest.raises(SourceError, match=r"CSI camera 1 could not be opened .*rpicam-hello --list-cameras"):
        FrameGrabber(spec_from_args(camera=1, picamera=True)).start()
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on a machine without it
    with pytest.raises(SourceError) as info:
        FrameGrabber(spec_from_args(picamera=True)).start()
    assert str(info.value).startswith("picamera2 is not installed: on Raspberry Pi OS run sudo apt install python3-picamera2")
    assert "\n" not in str(info.value)
