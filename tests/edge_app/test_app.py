"""The frame loop, in process: real videos written from CIFAR-10 validation images, the shipped model,
real log/snapshot sinks, a real MJPEG stream that dies and comes back, a real sd_notify socket."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.app import App
from edge_app.config import AppConfig, load_config
from edge_app.errors import OutputError
from edge_app.model import Classifier, resolve_model
from edge_app.notify import Notifier
from edge_app.outputs import FrameResult
from edge_app.outputs.display import KEY_SPACE, KeyControlled, KeyControls
from edge_app.outputs.draw import draw_overlay
from edge_app.tools.mjpeg import MjpegClient
from edge_app.web import WebServer
from edge_app.zones import WHOLE_FRAME
from tests.edge_app.helpers import decoded_frames, read_jsonl, wait_until
from tests.edge_app.mjpeg_server import MJPEGServer
from tests.edge_app.test_mqtt import MOSQUITTO, Broker, Listener

pytestmark = pytest.mark.timeout(60)

N_IMAGES = 60
REPEAT = 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory, cifar10_val: Dataset, write_video) -> tuple[Path, np.ndarray, np.ndarray]:
    """60 validation images at 640x480, each shown for 3 frames: (video, images, labels)."""
    x, y = cifar10_val.x[:N_IMAGES], cifar10_val.y[:N_IMAGES]
    video = write_video(tmp_path_factory.mktemp("clip") / "clip.avi", x, repeat=REPEAT)
    return video, x, y


@pytest.fixture(scope="module")
def classifier(default_model: Path) -> Classifier:
    return Classifier(resolve_model(default_model))


def config(**overrides) -> AppConfig:
    return load_config(None, {"headless": True, "stats_interval": 0.0, "model": "cifar10", **overrides})  # the 32 px model: the loop, not the model, is tested


class Collect:
    """A sink that keeps what it is given (a plain in-memory output, like the bench's)."""

    def __init__(self) -> None:
        self.results: list[FrameResult] = []
        self.closed = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


class Broken:
    """An output whose device went away: every write raises OutputError."""

    def __init__(self) -> None:
        self.calls = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.calls += 1
        raise OutputError("remote display disconnected")

    def close(self) -> None:
        pass


def run_in_thread(app: App) -> tuple[threading.Thread, list]:
    box: list = []

    def target() -> None:
        try:
            box.append(app.run())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


# ------------------------------------------------------------------------------------------ files


def test_every_frame_is_classified_like_classifier_classify_and_logged(tmp_path, clip, classifier) -> None:
    video, images, labels = clip
    log_path = tmp_path / "results.jsonl"
    app = App(config(source=str(video), log=str(log_path), top_k=3), handle_signals=False)
    assert app.run() == 0
    records = read_jsonl(log_path)
    frames = decoded_frames(video)
    assert len(records) == len(frames) == N_IMAGES * REPEAT
    assert [r["frame"] for r in records] == list(range(len(frames)))
    expected = [classifier.classify(f, k=3, threshold=classifier.threshold.value) for f in frames]  # the model's own (unset: 0.2)
    assert [r["top"][0]["label"] for r in records] == [e[0].label for e in expected]
    assert all(
        [c["id"] for c in r["top"]] == [c.id for c in e] and abs(r["top"][0]["score"] - e[0].score) < 1e-3 for r, e in zip(records, expected, strict=True)
    )
    # what the log says about accuracy is the model's accuracy on these images (upscaled, cropped, JPEG'd: close, not equal)
    logged_acc = np.mean([records[i * REPEAT]["top"][0]["id"] == labels[i] for i in range(N_IMAGES)])
    direct_acc = np.mean([classifier.classify(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[0].id == y for img, y in zip(images, labels, strict=True)])
    assert abs(logged_acc - direct_acc) <= 0.1, (logged_acc, direct_acc)
    # each record is complete, and `changed` marks exactly the label changes
    # headless with only a log: nothing draws, so no draw time is reported; every record names its source and model
    model_id = app.status()["model_id"]
    assert model_id.startswith("cifar10@") and len(model_id) == len("cifar10@") + 8
    for r in records:
        assert set(r["latency_ms"]) == {"capture", "preprocess", "invoke", "total"}
        lat = r["latency_ms"]
        assert lat["total"] + 0.05 >= lat["capture"] + lat["preprocess"] + lat["invoke"]
        assert r["source"] == f"video file {video}" and r["model"] == model_id and "file" not in r
    # the first frame has no rate yet: null, not a made-up 0.0
    assert records[0]["fps"] is None and all(r["fps"] > 0 for r in records[1:])
    tops = [r["top"][0]["label"] for r in records]
    assert [r["changed"] for r in records] == [True] + [a != b for a, b in itertools.pairwise(tops)]
    status = app.status()
    assert (status["frames"], status["dropped"], status["reconnects"], status["state"]) == (N_IMAGES * REPEAT, 0, 0, "stopped")
    assert status["model"] == "cifar10" and status["delegate"] == "cpu" and status["source"] == f"video file {video}"
    assert app.fps > 0 and status["inference_ms"] > 0 and status["uptime_s"] > 0


def test_a_folder_ends_cleanly_after_every_image(tmp_path, cifar10_val, classifier) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, img in enumerate(cifar10_val.x[:12]):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    sink = Collect()
    assert App(config(source=str(folder), top_k=1), extra_sinks=[sink], handle_signals=False).run() == 0
    expected = [classifier.classify(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), k=1)[0].label for img in cifar10_val.x[:12]]
    assert [r.label for r in sink.results] == expected and sink.closed


def test_threshold_top_k_and_smoothing(tmp_path, clip, classifier) -> None:
    video, _, _ = clip
    sink = Collect()
    App(config(source=str(video), top_k=5, threshold=0.2, smoothing=0.3, max_frames=40), extra_sinks=[sink], handle_signals=False).run()
    assert len(sink.results) == 40
    assert all(len(r.top) <= 5 and all(c.score >= 0.2 for c in r.top) for r in sink.results)
    frames = decoded_frames(video)[:40]
    raw = np.stack([classifier.scores(f) for f in frames])
    ema = raw[0].copy()
    for i, result in enumerate(sink.results):
        if i:
            ema = 0.3 * raw[i] + 0.7 * ema
        assert result.scores is not None and np.allclose(result.scores, ema, atol=1e-5)


def test_loop_with_max_frames_and_realtime_pacing(clip) -> None:
    video, _, _ = clip
    sink = Collect()
    App(config(source=str(video), loop=True, max_frames=N_IMAGES * REPEAT + 20), extra_sinks=[sink], handle_signals=False).run()
    assert [r.index for r in sink.results] == list(range(N_IMAGES * REPEAT + 20))  # it went round again
    paced = Collect()
    start = time.monotonic()
    App(config(source=str(video), realtime=True, duration=0.6), extra_sinks=[paced], handle_signals=False).run()
    elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < 3.0
    assert 8 <= len(paced.results) <= 25  # about 30 fps for 0.6 s, not the hundreds per second unpaced


def test_a_failing_output_is_logged_once_and_the_loop_goes_on(tmp_path, clip, caplog) -> None:
    video, _, _ = clip
    broken, sink = Broken(), Collect()
    with caplog.at_level(logging.WARNING, logger="edge_app.app"):
        app = App(config(source=str(video), max_frames=30, log=str(tmp_path / "r.jsonl")), extra_sinks=[broken, sink], handle_signals=False)
        assert app.run() == 0
    assert broken.calls == 30 and len(sink.results) == 30 and len(read_jsonl(tmp_path / "r.jsonl")) == 30
    errors = [r for r in caplog.records if "remote display disconnected" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert next(iter(app.status()["output_errors"].values())) == 30


def test_snapshots_on_label_changes(tmp_path, clip) -> None:
    video, _, _ = clip
    folder = tmp_path / "snaps"
    log_path = tmp_path / "changes.jsonl"
    App(config(source=str(video), snapshots=str(folder), snapshot_max=1000, log=str(log_path), log_changes_only=True), handle_signals=False).run()
    changes = read_jsonl(log_path)
    assert changes and all(r["changed"] for r in changes)
    files = sorted(folder.glob("snap-*.jpg"))
    assert len(files) == len(changes)
    assert [int(f.name.split("-")[2]) for f in files] == [r["frame"] for r in changes]
    first = cv2.imread(str(files[0]))
    assert first is not None and first.shape == (480, 640, 3)


def test_stats_lines_are_logged_periodically(clip, caplog) -> None:
    video, _, _ = clip
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        App(config(source=str(video), realtime=True, duration=1.0, stats_interval=0.3), handle_signals=False).run()
    stats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stats:")]
    assert len(stats) >= 2
    assert all(" fps " in s and "dropped" in s and "reconnects 0" in s for s in stats)
    assert any(r.getMessage().startswith("stopped (duration 1 s reached)") for r in caplog.records)


def test_request_stop_ends_a_looping_run_within_a_second(clip) -> None:
    video, _, _ = clip
    app = App(config(source=str(video), loop=True, realtime=True), handle_signals=False)
    thread, box = run_in_thread(app)
    assert wait_until(lambda: app.frames > 5, 10.0)
    start = time.monotonic()
    app.request_stop("test")
    thread.join(2.0)
    assert not thread.is_alive() and time.monotonic() - start < 1.0
    assert box == [0] and app.stop_reason == "test"


# ------------------------------------------------------------------------------------------ systemd + live


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    messages: list[tuple[float, str]] = []
    stop = threading.Event()

    def receive() -> None:
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                continue

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    yield str(path), messages
    stop.set()
    thread.join(1)
    sock.close()


def test_a_live_stream_that_dies_and_returns_keeps_the_watchdog_fed(notify_socket, cifar10_val) -> None:
    path, messages = notify_socket
    frames = [cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (320, 240)) for img in cifar10_val.x[:5]]
    server = MJPEGServer(frames, fps=30).start()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})  # WatchdogSec=0.4 s: a ping every 0.2 s
    app = App(config(source=server.url, open_timeout=2.0, watchdog=2.0), notifier=notifier, handle_signals=False)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: app.frames >= 10, 10.0), app.status()
        assert messages[0][1] == f"READY=1\nSTATUS=classifying stream {server.url}"
        server.stop()  # the camera goes away
        outage = time.monotonic()
        assert wait_until(lambda: app.status()["state"] == "waiting", 5.0), app.status()
        assert wait_until(lambda: app.status()["fps"] == 0.0, 3.0) and not app.status()["connected"]
        before = app.frames
        time.sleep(1.0)
        assert app.frames == before and thread.is_alive()
        pings = [t for t, m in messages if m == "WATCHDOG=1" and t > outage + 0.3]
        assert len(pings) >= 3, "the loop stopped feeding the watchdog while the source was away"
        assert any(m.startswith("STATUS=waiting for stream") for _, m in messages)
        server.start()  # ... and comes back on the same port
        assert wait_until(lambda: app.frames > before + 5, 15.0), app.status()
        status = app.status()
        assert status["reconnects"] == 1 and status["state"] == "running" and status["connected"]
    finally:
        app.request_stop("test over")
        thread.join(3.0)
        server.stop()
    assert box == [0]
    assert messages[-1][1] == "STOPPING=1\nSTATUS=stopping: test over"


class SlowStorageApp(App):
    """The app on slow storage (an SD card): opening a model takes ``delay`` seconds once ``slow`` is set."""

    delay = 1.5
    slow = False

    def _open_model(self, model=None):  # type: ignore[no-untyped-def]
        if self.slow:
            time.sleep(self.delay)
        return super()._open_model(model)


def test_a_reload_opens_the_new_model_while_the_old_one_keeps_classifying(clip, model_copy) -> None:
    from edge_app.model import default_model_dir

    video, _, _ = clip
    sink = Collect()
    app = SlowStorageApp(config(source=str(video), loop=True, realtime=True, model=str(model_copy)), extra_sinks=[sink], handle_signals=False)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: len(sink.results) > 5, 20.0), app.status()
        first = app.model_id
        for f in default_model_dir("cats-vs-dogs").iterdir():
            shutil.copy2(f, model_copy / f.name)
        app.slow = True
        outcome: list[dict] = []
        waiter = threading.Thread(target=lambda: outcome.append(app.reload_and_wait()), daemon=True)
        asked = time.perf_counter()
        waiter.start()
        waiter.join(20.0)
        took = time.perf_counter() - asked
        during = [r for r in sink.results if r.model == first and r.time > time.time() - took]
        count = len(sink.results)
        assert wait_until(lambda: len(sink.results) > count + 5, 10.0)
    finally:
        app.request_stop("test over")
        thread.join(10.0)
    assert box == [0]
    assert outcome and outcome[0]["ok"] and outcome[0]["model"] != first, outcome
    assert took >= SlowStorageApp.delay
    # the 30 fps video went on being classified by the old model for the 1.5 s the new one took to open
    assert len(during) >= 20, (len(during), took)
    assert {c.label for r in sink.results[-5:] for c in r.top} <= {"cat", "dog"}
    frames = [r.index for r in sink.results]
    assert all(b > a for a, b in itertools.pairwise(frames))


# ------------------------------------------------------------------------------------------ display keys, web


class ScriptedWindow(KeyControlled):
    """Stands in for the OpenCV window (this OpenCV build has no GUI): the real ``KeyControls``, with key
    presses scripted by frame count, and space pressed again after a few idle polls while paused."""

    def __init__(self, keys: dict[int, int], snapshot_dir: Path, resume_after_polls: int = 5) -> None:
        self.controls = KeyControls(snapshot_dir)
        self.keys = keys
        self.resume_after_polls = resume_after_polls
        self.seen: list[int] = []
        self.polls_while_paused = 0
        self.frames_at_pause: int | None = None
        self.closed = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.seen.append(result.index)
        self.shown = draw_overlay(frame, result)
        self.controls.handle(self.keys.get(len(self.seen), -1), self.shown, result.index)
        if self.paused:
            self.frames_at_pause = len(self.seen)

    def poll(self, delay_ms: int = 1) -> None:
        time.sleep(delay_ms / 1000)
        if self.paused:
            self.polls_while_paused += 1
            assert len(self.seen) == self.frames_at_pause, "frames were processed while paused"
            if self.polls_while_paused == self.resume_after_polls:
                self.controls.handle(KEY_SPACE, self.shown)

    def close(self) -> None:
        self.closed = True


def test_display_keys_pause_snapshot_and_quit(tmp_path, clip) -> None:
    video, _, _ = clip
    window = ScriptedWindow({10: KEY_SPACE, 20: ord("s"), 30: ord("q")}, tmp_path / "shots")
    app = App(config(source=str(video), loop=True), window=window, handle_signals=False)
    assert app.run() == 0
    assert app.stop_reason == "quit from the display" and app.frames == 30 and window.closed
    assert window.polls_while_paused == 5 and window.seen == list(range(30))
    shots = list((tmp_path / "shots").glob("snapshot-*-000019.png"))
    assert len(shots) == 1
    shot = cv2.imread(str(shots[0]))
    assert shot is not None and shot.shape == (480, 640, 3)


def test_web_view_serves_the_app_status(clip) -> None:
    video, _, _ = clip
    app = App(config(source=str(video), loop=True, realtime=True, http="127.0.0.1:0"), handle_signals=False)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: app.frames > 5, 10.0)
        server = app.web
        assert isinstance(server, WebServer) and any(o.name == "web 127.0.0.1:0" for o in app.outputs())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/api/status")
        response = conn.getresponse()
        assert response.status == 200
        status = json.loads(response.read())
        for key in ("model", "source", "fps", "inference_ms", "frames", "dropped", "reconnects", "uptime_s"):
            assert key in status, key
        assert status["model"] == "cifar10" and status["source"] == f"video file {video}" and status["frames"] > 5 and status["fps"] > 5
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        app.request_stop("test over")
        thread.join(3.0)
    assert box == [0]


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
def test_mqtt_gets_every_label_change_and_the_status(tmp_path, clip) -> None:
    video, _, _ = clip
    broker = Broker(tmp_path / "broker").start()
    listener = Listener(broker.port)
    try:
        log_path = tmp_path / "changes.jsonl"
        overrides = {"mqtt": broker.url, "mqtt_device": "pi-kitchen", "log": str(log_path), "log_changes_only": True}
        app = App(config(source=str(video), realtime=True, max_frames=45, **overrides), handle_signals=False)
        assert app.run() == 0
        changes = read_jsonl(log_path)
        topic = "edge-app/pi-kitchen/classification"
        assert listener.wait(lambda: len(listener.on(topic)) >= len(changes), 10), (len(listener.on(topic)), len(changes))
        published = [m.json() for m in listener.on(topic)]
        assert [(p["frame"], p["label"]) for p in published] == [(r["frame"], r["top"][0]["label"]) for r in changes]
        assert listener.wait(lambda: bool(listener.on("edge-app/pi-kitchen/status")), 10)
        status = listener.on("edge-app/pi-kitchen/status")[-1].json()
        assert status["model"] == "cifar10" and status["source"] == f"video file {video}" and "reconnects" in status
        assert listener.wait(lambda: [m.payload for m in listener.on("edge-app/pi-kitchen/availability")][-1:] == ["offline"], 10)
    finally:
        listener.close()
        broker.stop()


# ------------------------------------------------------------------------------------------ several sources


def test_several_sources_share_one_interpreter_each_with_its_own_log_status_and_states(tmp_path, clip, cifar10_val, write_video, classifier) -> None:
    front, _, _ = clip
    back = write_video(tmp_path / "back.avi", cifar10_val.x[N_IMAGES : N_IMAGES + 40], repeat=2)
    seen = Collect()
    app = App(config(source=[f"front={front}", f"back={back}"], log=str(tmp_path / "results.jsonl"), debounce=2), extra_sinks=[seen], handle_signals=False)
    assert app.run() == 0 and app.stop_reason == "end of every source"
    assert not (tmp_path / "results.jsonl").exists()
    for name, video in (("front", front), ("back", back)):
        records = read_jsonl(tmp_path / f"results-{name}.jsonl")
        frames = decoded_frames(video)
        assert [r["frame"] for r in records] == list(range(len(frames)))  # every frame of each file, in order
        assert {r["source"] for r in records} == {f"video file {video}"}
        assert [r["top"][0]["label"] for r in records] == [classifier.classify(f, k=1)[0].label for f in frames]  # as if it ran alone
        assert records[-1]["state"] == records[-1]["top"][0]["label"]  # its own debounced state
        assert {z.name for r in seen.results if r.source == f"video file {video}" for z in r.states or []} == {f"{name}.{WHOLE_FRAME}"}
    assert app.frames == N_IMAGES * REPEAT + 80
    order = [r.source for r in seen.results]
    last_back = max(i for i, src in enumerate(order) if src == f"video file {back}")
    assert last_back < 200  # round-robin while both have frames (one after the other would end back at 259)
    status = app.status()
    assert [(s["name"], s["frames"]) for s in status["sources"]] == [("front", N_IMAGES * REPEAT), ("back", 80)]
    assert status["frames"] == app.frames and status["captured"] == app.frames


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _first_stream_part(port: int, path: str) -> np.ndarray:
    """The first JPEG of an MJPEG stream, decoded."""
    with MjpegClient(f"http://127.0.0.1:{port}{path}", timeout_s=10) as viewer:
        image = cv2.imdecode(np.frombuffer(next(iter(viewer)), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_one_web_view_streams_every_source(tmp_path, clip, fashion_mnist_test, write_video) -> None:
    """Two sources, one server: each has its own stream, snapshot and status; the page shows both; health covers both."""
    colour, _, _ = clip  # CIFAR-10 photos
    grey = write_video(tmp_path / "grey.avi", fashion_mnist_test.x[:20], repeat=3)  # grey Fashion-MNIST images
    app = App(config(source=[f"front={colour}", f"back={grey}"], loop=True, realtime=True, http="127.0.0.1:0"), handle_signals=False)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: all(ch.frames > 5 for ch in app.channels), 15.0)
        assert app.web is not None and list(app.web.feeds) == ["front", "back"]
        port = app.web.port
        code, body = _get(port, "/api/status")
        status = json.loads(body)
        assert code == 200 and status["views"] == ["front", "back"] and "view" not in status
        code, body = _get(port, "/api/status?source=back")
        back = json.loads(body)
        assert code == 200 and back["view"] == "back" and back["source"] == f"video file {grey}"
        assert back["frames"] == next(s["frames"] for s in back["sources"] if s["name"] == "back") < back["frames"] + app.channels[0].frames
        assert back["last"]["source"] == f"video file {grey}"
        code, body = _get(port, "/api/status?source=side")
        assert code == 404 and body.decode() == "no source 'side'; sources: front, back\n"
        own = {"front": decoded_frames(colour), "back": decoded_frames(grey)}
        for name, other in (("front", "back"), ("back", "front")):
            part = _first_stream_part(port, f"/stream.mjpg?source={name}")
            assert part.shape == (480, 640, 3)

            def nearest(frames: list[np.ndarray], part: np.ndarray = part) -> float:  # under the overlay's text, inside the picture
                return min(float(np.abs(part[200:440, 160:480].astype(int) - f[200:440, 160:480]).mean()) for f in frames)

            assert nearest(own[name]) < 4.0 < nearest(own[other]), name  # one of its own source's frames, not the other's
            code, jpeg = _get(port, f"/snapshot.jpg?source={name}")
            assert code == 200 and jpeg[:2] == b"\xff\xd8"
        code, page = _get(port, "/")
        assert code == 200 and b'<figure data-source="front">' in page and b'<figure data-source="back">' in page  # the overview
        code, page = _get(port, "/?source=back")
        assert code == 200 and b"edge-app back" in page
        assert _get(port, "/healthz") == (200, b"ok\n")
        assert wait_until(lambda: app.web is not None and app.web.viewers == 0, 5.0)  # the streams above are closed: their viewers leave
    finally:
        app.request_stop("test over")
        thread.join(5.0)
    assert box == [0]


def test_source_names_must_be_unique_and_default_to_the_target() -> None:
    assert [n for n, _ in config(source=["clip.mp4", "other/clip.mp4", "rtsp://cam.local/s", "1", "picamera:1"]).source_specs()] == [
        "clip", "clip-2", "cam-local", "camera1", "csi1"]
    assert config(source=["picamera:1"]).source_spec().kind == "picamera2"
    with pytest.raises(Exception, match="source name 'door' is used twice"):
        config(source=["door=a.mp4", "door=b.mp4"])
