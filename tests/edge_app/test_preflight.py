"""``--check-config`` checks what the run checks: for each configuration the run refuses, check-config refuses it
with the same one-line message and exit code (it used to say "config OK", exit 0, to all eight below), and it
starts nothing and writes nothing. Real bundles (the shipped one, damaged copies), a real video, real sockets."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.model import default_model_dir
from tests.edge_app.helpers import edge_app, one_error_line

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preflight") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer.write(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def _bundle(tmp: Path, damage: Callable[[Path], None]) -> Path:
    folder = tmp / "bundle"
    shutil.copytree(default_model_dir("cifar10"), folder)
    damage(folder)
    return folder


def _truncate(folder: Path) -> None:
    data = (folder / "model.tflite").read_bytes()
    (folder / "model.tflite").write_bytes(data[: len(data) // 2])


def _nine_labels(folder: Path) -> None:
    labels = (folder / "labels.txt").read_text().splitlines()
    (folder / "labels.txt").write_text("\n".join(labels[:9]) + "\n")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("classes", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _empty_labels(folder: Path) -> None:
    (folder / "labels.txt").write_text("")


def _xyz_colours(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["input"]["color_order"] = "XYZ"
    (folder / "manifest.json").write_text(json.dumps(manifest))


BUNDLES = {"truncated model": _truncate, "9 labels for 10 classes": _nine_labels, "empty labels": _empty_labels,
           "color_order XYZ": _xyz_colours}  # fmt: skip


def _same_refusal(args: list[str], code: int, words: str) -> None:
    checked = edge_app(*args, "--check-config", timeout=120)
    ran = edge_app(*args, "--max-frames", "3", timeout=120)
    assert ran.returncode == code, ran.stderr
    assert checked.returncode == code, checked.stdout + checked.stderr
    assert "config OK" not in checked.stdout
    assert one_error_line(checked) == one_error_line(ran)
    assert words in one_error_line(checked)


@pytest.mark.parametrize("damage", list(BUNDLES))
def test_a_damaged_bundle_is_refused_as_the_run_refuses_it(tmp_path, video, damage) -> None:
    bundle = _bundle(tmp_path, BUNDLES[damage])
    words = {"truncated model": "cannot load model", "9 labels for 10 classes": "has 9 classes but the model outputs 10",
             "empty labels": "is empty", "color_order XYZ": "color_order 'XYZ'"}[damage]  # fmt: skip
    _same_refusal(["--model", str(bundle), "--source", str(video), "--headless"], 4, words)


def test_a_missing_source_file_is_refused_as_the_run_refuses_it(tmp_path) -> None:
    _same_refusal(["--source", str(tmp_path / "missing.avi"), "--headless"], 5, "does not exist")


def test_an_address_it_cannot_bind_and_a_port_in_use_are_refused(video, busy_port) -> None:
    _same_refusal(["--source", str(video), "--headless", "--http", "192.0.2.1:8080"], 7, "cannot serve the web view on 192.0.2.1:8080")
    _same_refusal(["--source", str(video), "--headless", "--http", f"127.0.0.1:{busy_port}"], 7, "Address already in use")


def test_an_unwritable_log_path_is_refused_as_the_run_refuses_it(tmp_path, video) -> None:
    _same_refusal(["--source", str(video), "--headless", "--log", str(video / "x.jsonl")], 7, f"cannot open log file {video}/x.jsonl")


def test_a_pixel_zone_outside_the_file_frames_is_refused_before_the_run(video) -> None:
    result = edge_app("--source", str(video), "--headless", "--zone", "door:700,10,100,100", "--check-config", timeout=120)
    assert result.returncode == 3 and "does not fit the 640x480 frame" in one_error_line(result)


def test_a_good_config_is_checked_without_creating_or_serving_anything(tmp_path, video) -> None:
    log = tmp_path / "new" / "folder" / "detections.jsonl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = edge_app("--source", str(video), "--headless", "--log", str(log), "--http", f"127.0.0.1:{port}",
                      "--zone", "door:0.5,0,0.5,1", "--check-config", timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "config OK" in out and "(640x480 frames)" in out and "(jsonl, writable)" in out
    assert "imagenet/model.tflite (224x224x3 input, 1000 classes" in out  # the default model
    assert f"http = 127.0.0.1:{port} (free)" in out
    assert not (tmp_path / "new").exists()  # the log folder is only tried, not made
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    camera = edge_app("--camera", "7", "--headless", "--check-config", timeout=120)
    assert camera.returncode == 0 and "camera 7 (not opened by --check-config" in camera.stdout
