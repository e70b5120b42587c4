"""Decoding only what the model needs: MJPEG frames at 1/2, 1/4 or 1/8 scale, and how far their answers stay from full decoding.

A real MJPG video (640x480, as a camera sends them) classified by the real app twice: ``--decode full`` (the default)
and ``--decode reduced`` (headless with a log: nothing shows the frames). How far each model may be reduced is measured
by ``check-decode`` (tests/converter/test_decode_check.py) and read from its manifest's ``decode.cover``: the 32x32
CIFAR-10 model flips on 5 % of real photos at 1/8, so its manifest keeps it at 1/4 on a 640x480 camera; the 224 px
dogs-vs-cats model takes the plain rule (1/2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_app.model import default_model_dir
from edge_app.preprocess import reduction_for
from tests.edge_app.helpers import edge_app

pytestmark = pytest.mark.timeout(120)


def test_reduction_is_the_largest_that_still_covers_the_model_input() -> None:
    assert reduction_for((480, 640), (32, 32)) == 8  # crop 480x480 -> 60x60 at 1/8
    assert reduction_for((480, 640), (64, 64)) == 4  # 60 < 64 at 1/8; 120 at 1/4
    assert reduction_for((480, 640), (224, 224)) == 2
    assert reduction_for((480, 640), (300, 300)) == 1  # 240 at 1/2 would be an upscale
    assert reduction_for((1080, 1920), (32, 32)) == 8 and reduction_for((48, 64), (32, 32)) == 1
    assert reduction_for((480, 640), (32, 32), ((1.0, 0.5), (1.0, 0.5))) == 8  # two halves: 40x40 crops at 1/8
    assert reduction_for((480, 640), (32, 32), ((1.0, 1.0), (0.25, 0.25))) == 2  # a 120x160 zone: 60 at 1/2, 30 at 1/4
    assert reduction_for((480, 640), (32, 32), ((0.1, 0.1),)) == 1
    assert reduction_for((480, 640), (32, 32), cover=3.75) == 4  # the CIFAR-10 model's measured margin: a 120x120 crop at least
    assert reduction_for((1080, 1920), (32, 32), cover=3.75) == 8 and reduction_for((240, 320), (32, 32), cover=3.75) == 2


def labels(log: Path) -> list[str]:
    return [json.loads(line)["top"][0]["label"] for line in log.read_text().splitlines()]


@pytest.mark.parametrize("case", [("cifar10", 4, 0.97), ("cats-vs-dogs", 2, 0.99)], ids=["cifar10", "cats-vs-dogs"])
def test_reduced_decoding_agrees_with_full_decoding(tmp_path, cifar10_val, shared_datasets, write_video, case) -> None:
    """Each model on its own kind of picture: CIFAR-10 images (blown up 15x20 with hard pixel edges, a hard case for 4x4
    block averages: 98.5 % at 1/4, 98 % at 1/8), and real dogs-vs-cats photos of the test split."""
    model, factor, least = case
    if model == "cifar10":
        images = cifar10_val.x[:200]
    else:
        from converter.data.datasets import load_dataset, stratified_sample

        photos = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "test", image_size=(240, 240))  # the zones tests' size: one decode
        images = photos.x[stratified_sample(photos.y, 100, seed=0)]
    video = write_video(tmp_path / "clip.avi", images)
    bundle = default_model_dir(model)
    full, reduced = tmp_path / "full.jsonl", tmp_path / "reduced.jsonl"
    every = ("--threshold", "0")  # the top-1 of every frame, however unsure (the models' own thresholds leave some unreported)
    ran_full = edge_app("--model", str(bundle), *every, "--source", str(video), "--headless", "--decode", "full", "--log", str(full), timeout=120)
    ran_reduced = edge_app("--model", str(bundle), *every, "--source", str(video), "--headless", "--decode", "reduced", "--log", str(reduced),
                           timeout=120)
    assert ran_full.returncode == 0 and ran_reduced.returncode == 0, ran_full.stderr + ran_reduced.stderr
    assert f"at 1/{factor} scale" in ran_reduced.stderr and "scale" not in ran_full.stderr
    a, b = labels(full), labels(reduced)
    assert len(a) == len(b) == 200
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    print(f"{model}: same top-1 on {agree:.1%} of {len(a)} frames at 1/{factor}")  # the README's figure (pytest -rP)
    assert agree >= least, agree


def test_zones_decode_at_the_scale_that_still_covers_each_zone(tmp_path, cifar10_val, write_video) -> None:
    """Fractional zones: the smallest zone must still cover the model input; their boxes stay in the camera's pixels
    (the collector's crops of the fully decoded frames it keeps are whole halves). Pixel zones keep full decoding."""
    import cv2

    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:20], repeat=2)
    halves = ("--zone", "left:0,0,0.5,1", "--zone", "right:0.5,0,0.5,1")
    collect = tmp_path / "collect"
    zoned = edge_app("--model", "cifar10", "--source", str(video), "--headless", "--decode", "reduced", *halves,
                     "--collect", str(collect), "--collect-interval", "3600", "--collect-min-gap", "0")
    # 320x480 halves: 320x320 crops, 160x160 at 1/2 (the CIFAR-10 model's measured cover of 3.75: 120 px at least)
    assert zoned.returncode == 0 and "at 1/2 scale" in zoned.stderr, zoned.stderr
    crops = sorted((collect / "inbox").glob("*.jpg"))
    assert {p.stem.rsplit("-", 1)[-1] for p in crops} == {"left", "right"}
    assert all(cv2.imread(str(p)).shape == (480, 320, 3) for p in crops)
    small = edge_app("--model", "cifar10", "--source", str(video), "--headless", "--decode", "reduced", "--zone", "corner:0,0,0.1,0.1",
                     "--max-frames", "2")
    assert small.returncode == 0 and "at 1/" not in small.stderr, small.stderr  # 64x48 px: a 48x48 crop, 24 at 1/2 < 32
    pixels = edge_app("--model", "cifar10", "--source", str(video), "--headless", "--decode", "reduced", "--zone", "left:0,0,320,480",
                      "--max-frames", "2")
    assert pixels.returncode == 0 and "at 1/" not in pixels.stderr, pixels.stderr
    assert "decode = reduced is ignored: --zone in pixels needs the full frames" in pixels.stderr


def test_snapshots_and_collected_frames_are_full_size_decodes_of_the_frames_kept(tmp_path, cifar10_val, write_video) -> None:
    """The model sees 1/4-scale frames; the few frames snapshots and the collector keep are decoded in full from their JPEG."""
    import cv2

    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:40], repeat=3)
    ran = edge_app("--model", "cifar10", "--source", str(video), "--headless", "--decode", "reduced", "--snapshots", str(tmp_path / "shots"),
                   "--collect", str(tmp_path / "collect"), "--collect-interval", "3600", "--collect-min-gap", "0", timeout=120)
    assert ran.returncode == 0 and "at 1/4 scale" in ran.stderr and "ignored" not in ran.stderr, ran.stderr
    shots = sorted((tmp_path / "shots").glob("*.jpg"))
    kept = sorted((tmp_path / "collect" / "inbox").glob("*.jpg"))
    assert 1 <= len(shots) < 120 and 1 <= len(kept) < 120  # label changes (and the unsure ones), not every frame
    for path in shots[:5] + kept[:5]:
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (480, 640, 3), (path, None if image is None else image.shape)


def test_the_web_view_decodes_only_the_frames_it_streams(tmp_path, cifar10_val, write_video, caplog) -> None:
    """--decode reduced with --http: the model gets 1/4-scale frames, a viewer still gets full 640x480 frames, decoded from the
    compressed ones on the web view's own thread, and nothing is decoded at full size while nobody watches."""
    import http.client
    import logging
    import threading

    import cv2
    import numpy as np

    from edge_app.app import App
    from edge_app.config import load_config
    from tests.edge_app.helpers import decoded_frames, wait_until

    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:30], repeat=4)
    caplog.set_level(logging.INFO)
    app = App(load_config(None, {"source": [str(video)], "headless": True, "stats_interval": 0.0, "loop": True, "realtime": True,
                                 "decode": "reduced", "http": "127.0.0.1:0", "model": "cifar10"}), handle_signals=False)
    box: list = []
    thread = threading.Thread(target=lambda: box.append(app.run()), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: app.frames > 20, 15.0)
        assert any("at 1/4 scale" in r.getMessage() for r in caplog.records)
        assert not any("decode = reduced is ignored" in r.getMessage() for r in caplog.records)
        assert app.web is not None and app.web.encoded == 0  # no viewer yet: no full-size decode, no JPEG
        assert app.last_result is not None and app._last_image is not None and app._last_image.shape == (120, 160, 3)
        conn = http.client.HTTPConnection("127.0.0.1", app.web.port, timeout=10)
        conn.request("GET", "/snapshot.jpg")
        response = conn.getresponse()
        shot = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        conn.close()
        assert response.status == 200 and shot is not None and shot.shape == (480, 640, 3)
        middle = shot[200:440, 160:480].astype(int)  # inside the picture, under the overlay
        assert min(float(np.abs(middle - f[200:440, 160:480]).mean()) for f in decoded_frames(video)) < 4.0  # one of its full frames
        assert app.web.encoded >= 1
    finally:
        app.request_stop("test over")
        thread.join(5.0)
    assert box == [0]


class FakeUSBCamera:
    """``cv2.VideoCapture`` of a V4L2 camera (none can exist on this machine), serving real JPEG frames.

    Like the V4L2 backend: MJPG on request; with ``CAP_PROP_CONVERT_RGB`` off, ``read()`` returns the
    driver's buffer (the JPEG bytes as one row) instead of the decoded frame. ``honours_raw=False``
    plays a driver that ignores the setting and keeps decoding; ``mjpeg_size`` a camera whose MJPEG mode
    has another frame size.
    """

    def __init__(self, frames: list, honours_raw: bool = True, mjpeg_size: tuple[float, float] | None = None) -> None:
        import cv2

        self.cv2, self.frames, self.honours_raw, self.mjpeg_size = cv2, frames, honours_raw, mjpeg_size
        self.props = {cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0, cv2.CAP_PROP_FPS: 30.0,
                      cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter.fourcc(*"YUYV")), cv2.CAP_PROP_CONVERT_RGB: 1.0}
        self.i = 0

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        if prop == self.cv2.CAP_PROP_CONVERT_RGB and not self.honours_raw:
            return True  # says yes, keeps decoding (some backends do)
        self.props[prop] = float(value)
        if prop == self.cv2.CAP_PROP_FOURCC:
            mjpeg = int(value) == self.cv2.VideoWriter.fourcc(*"MJPG")
            w, h = self.mjpeg_size if mjpeg and self.mjpeg_size else (640.0, 480.0)
            self.props[self.cv2.CAP_PROP_FRAME_WIDTH], self.props[self.cv2.CAP_PROP_FRAME_HEIGHT] = w, h
        return True

    def read(self, image=None):
        jpeg = self.frames[self.i % len(self.frames)]
        self.i += 1
        if self.props[self.cv2.CAP_PROP_CONVERT_RGB] == 0:
            return True, jpeg.reshape(1, -1)
        return True, self.cv2.imdecode(jpeg, self.cv2.IMREAD_COLOR)

    def release(self) -> None:
        pass


@pytest.mark.parametrize(("honours_raw", "mjpeg_size"), [(True, None), (False, None), (True, (1280.0, 720.0))],
                         ids=["raw-mjpeg", "driver-decodes", "mjpeg-mode-resizes"])
def test_a_usb_camera_hands_over_mjpeg_decoded_at_reduced_scale(monkeypatch, cifar10_val, honours_raw, mjpeg_size) -> None:
    import cv2
    import numpy as np

    from edge_app.sources import opencv
    from edge_app.sources.base import SourceSpec

    frames = [cv2.imencode(".jpg", cv2.resize(img[:, :, ::-1], (640, 480), interpolation=cv2.INTER_CUBIC))[1] for img in cifar10_val.x[:5]]
    camera = FakeUSBCamera(frames, honours_raw, mjpeg_size)
    monkeypatch.setattr(opencv.cv2, "VideoCapture", lambda target: camera)
    source = opencv.OpenCVSource(SourceSpec(target=0, reduce_to=(32, 32)))
    source.open()
    frame = source.read()
    assert frame is not None
    if mjpeg_size:  # MJPEG would change the picture size: the camera is put back to its own format, decoded frames
        assert source.reduction == 1 and camera.get(cv2.CAP_PROP_FOURCC) == cv2.VideoWriter.fourcc(*"YUYV")
        assert frame.shape == (480, 640, 3)
        np.testing.assert_array_equal(frame, cv2.imdecode(frames[0], cv2.IMREAD_COLOR))  # no probe frame taken
        source.close()
        return
    full = cv2.imdecode(frames[1], cv2.IMREAD_COLOR)  # the probe took frame 0
    if honours_raw:
        assert source.reduction == 8 and frame.shape == (60, 80, 3)
        small = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA)
        assert float(np.mean(np.abs(frame.astype(int) - small.astype(int)))) < 6  # the same picture, DCT-scaled
    else:
        assert source.reduction == 1 and frame.shape == (480, 640, 3)  # fell back to the decoded frames
        np.testing.assert_array_equal(frame, full)
    source.close()
