"""``edge-app`` as a user runs it: ``python -m edge_app`` in a subprocess, exit codes, stderr, files written.
Real videos from CIFAR-10 validation images, the shipped model and copies of it that were damaged on purpose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import build_parser
from edge_app.config import field_specs
from edge_app.delegates import NO_EDGETPU
from edge_app.errors import ExitCode
from edge_app.outputs.display import opencv_gui_backend
from tests.edge_app.helpers import edge_app, env, one_error_line

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, cifar10_val, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("cli") / "clip.avi", cifar10_val.x[:40], repeat=2)


# ------------------------------------------------------------------------------------------ flags and config


def test_every_config_key_is_a_flag() -> None:
    flags = {s for action in build_parser()._actions for s in action.option_strings}
    assert {spec.flag for spec in field_specs().values()} <= flags
    assert {"--config", "--check-config", "--debug", "--version", "-v", "-q", "--no-headless", "--no-loop"} <= flags


def test_version_and_help() -> None:
    result = edge_app("--version")
    assert result.returncode == 0 and result.stdout.strip() == "edge-app 0.1.0"
    helped = edge_app("--help")
    assert helped.returncode == 0 and "--top-k N" in helped.stdout and "edge-app bench " in helped.stdout


def test_help_lists_every_subcommand() -> None:
    helped = edge_app("--help")
    assert helped.returncode == 0
    for name in ("bench", "soak", "review"):
        assert f"edge-app {name} " in helped.stdout, helped.stdout
        assert edge_app(name, "--help").returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (("--headles", "--source", "x.avi"), "unknown flag --headles (did you mean --headless?)"),  # was run as --headless
    (("--hedless",), "unknown flag --hedless (did you mean --headless?)"),  # was 20 lines of usage
    (("--top-k=3", "--thresold", "0.2"), "unknown flag --thresold (did you mean --threshold?)"),
    (("benc",), "unknown subcommand 'benc' (did you mean edge-app bench?)"),
    (("--top-k",), "argument --top-k: expected one argument"),
])  # fmt: skip
def test_a_mistyped_flag_is_one_line_naming_the_closest(args, words) -> None:
    result = edge_app(*args)
    assert result.returncode == ExitCode.USAGE
    assert words in one_error_line(result) and "usage:" not in result.stderr


def test_a_subcommand_mistyped_flag_names_the_closest() -> None:
    result = edge_app("bench", "--frame", "3")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == ExitCode.USAGE and len(lines) == 1
    assert lines[0].startswith("edge-app bench: error: unknown flag --frame (did you mean --frames?)")


def test_check_config_accepts_the_example_and_shows_the_flags_on_top(tmp_path, repo_root) -> None:
    clip = tmp_path / "x.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (320, 240))
    writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    result = edge_app("--check-config", "--config", str(repo_root / "systemd" / "config.example.toml"), "--top-k", "2", "--source", str(clip),
                      "--log", str(tmp_path / "results.jsonl"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("edge-app: config OK (")
    assert "  top_k = 2\n" in result.stdout and f"  source = video file {clip} (320x240 frames)\n" in result.stdout
    # the example leaves threshold unset: the default ImageNet bundle's own, from its manifest, and check-config says so
    assert "  threshold = " not in result.stdout and "), threshold 0.1 (recommended by the model's manifest.json)\n" in result.stdout


@pytest.mark.parametrize(
    ("text", "args", "code", "words"),
    [
        ("thresold = 0.3\n", (), ExitCode.CONFIG, "unknown key 'thresold' (did you mean 'threshold'"),
        ("top_k = 'three'\n", (), ExitCode.CONFIG, "top_k must be an integer, got 'three'"),
        ("", ("--threshold", "2"), ExitCode.CONFIG, "--threshold must be >= 0.0 and <= 1.0, got 2.0"),
        ("", ("--model", "/nonexistent/model"), ExitCode.MODEL, "model not found: /nonexistent/model"),
        ("", ("--camera", "1", "--source", "a.mp4"), ExitCode.CONFIG, "camera and source are mutually exclusive"),
    ],
)
def test_check_config_rejects_with_one_line(tmp_path, text, args, code, words) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    result = edge_app("--check-config", "--config", str(path), *args)
    assert result.returncode == code
    assert words in one_error_line(result)


def test_usage_errors_exit_2() -> None:
    result = edge_app("--top-k", "many")
    assert result.returncode == ExitCode.USAGE and "invalid int value: 'many'" in result.stderr


# ------------------------------------------------------------------------------------------ runs


def test_a_video_run_logs_every_frame_as_csv(tmp_path, clip) -> None:
    log = tmp_path / "out" / "results.csv"
    result = edge_app("--headless", "--source", str(clip), "--log", str(log), "--top-k", "2", "-q")
    assert result.returncode == 0, result.stderr
    rows = log.read_text().splitlines()
    assert rows[0].startswith("time,epoch,frame,label,score,top,") and len(rows) == 1 + 80
    assert "INFO edge_app" not in result.stderr  # -q (the runtime's own C++ INFO line is not ours to silence)


def test_the_example_service_config_runs_with_flags_on_top(tmp_path, clip, repo_root) -> None:
    log = tmp_path / "changes.jsonl"
    example = repo_root / "systemd" / "config.example.toml"
    # --model cifar10 on these 32 px CIFAR-10 photos: the threshold the file leaves unset is the rule's 0.2 for its 10 classes
    result = edge_app("--config", str(example), "--model", "cifar10", "--source", str(clip), "--log", str(log), "--max-frames", "30",
                      "--stats-interval", "0")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and all(r["changed"] for r in records)  # log_changes_only = true from the file
    assert all(len(r["top"]) <= 3 and all(c["score"] >= 0.2 for c in r["top"]) for r in records)  # top_k 3, threshold 0.2
    assert "threshold 0.2 (the rule for 10 classes, min(0.2, 100/classes))" in result.stderr  # the startup log says which and why
    assert "stopped (max_frames 30 reached): 30 frames" in result.stderr


def test_truncated_video_ends_cleanly_with_the_frames_before_the_damage(tmp_path, clip) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    log = tmp_path / "cut.jsonl"
    result = edge_app("--headless", "--source", str(cut), "--log", str(log))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert 10 < len(records) < 80 and [r["frame"] for r in records] == list(range(len(records)))
    assert "truncated or corrupt" in result.stderr and "stopped (end of source)" in result.stderr


def test_sigterm_mid_run_exits_0_quickly_with_a_valid_log(tmp_path, clip) -> None:
    log = tmp_path / "live.jsonl"
    args = [sys.executable, "-m", "edge_app", "--headless", "--source", str(clip), "--loop", "--realtime", "--log", str(log)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and log.stat().st_size > 2000):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no log lines appeared"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert elapsed < 2.0, f"took {elapsed:.1f} s to stop"
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole and valid
    assert len(records) > 5 and log.read_text().endswith("\n")
    assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------------------------------ faults


def test_corrupt_empty_and_truncated_models(tmp_path, model_copy) -> None:
    model = model_copy / "model.tflite"
    good = model.read_bytes()
    for data, words in (
        (b"", "is not a TFLite model (empty, truncated or another format)"),
        (os.urandom(4096), "is not a TFLite model"),
        (good[: len(good) // 3], "cannot load model"),
    ):
        model.write_bytes(data)
        result = edge_app("--headless", "--source", "x.mp4", "--model", str(model_copy))
        assert result.returncode == ExitCode.MODEL, result.stderr
        assert words in one_error_line(result)


def test_debug_adds_the_traceback(model_copy) -> None:
    (model_copy / "model.tflite").write_bytes(b"")
    result = edge_app("--headless", "--source", "x.mp4", "--model", str(model_copy), "--debug")
    assert result.returncode == ExitCode.MODEL
    assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith("edge-app: error:")


def test_labels_with_the_wrong_number_of_classes(tmp_path, model_copy) -> None:
    labels = tmp_path / "nine.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(9)))
    result = edge_app("--headless", "--source", "x.mp4", "--model", str(model_copy), "--labels", str(labels))
    assert result.returncode == ExitCode.MODEL
    assert "has 9 classes but the model outputs 10; use the labels.txt written with this model" in one_error_line(result)


def test_unwritable_log_folder(tmp_path, clip) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    result = edge_app("--headless", "--source", str(clip), "--log", str(blocker / "results.jsonl"))
    assert result.returncode == ExitCode.OUTPUT
    assert "cannot open log file" in one_error_line(result)


def test_missing_camera_fails_at_start_with_what_to_check() -> None:
    start = time.monotonic()
    result = edge_app("--headless", "--camera", "9")
    assert result.returncode == ExitCode.SOURCE and time.monotonic() - start < 15
    line = one_error_line(result)
    assert "camera 9 could not be opened: check the cable" in line
    assert "WARN" not in result.stderr  # OpenCV's own chatter is kept out unless -v


def test_missing_video_and_no_edge_tpu(tmp_path) -> None:
    result = edge_app("--headless", "--source", str(tmp_path / "nope.mp4"))
    assert result.returncode == ExitCode.SOURCE and "does not exist" in one_error_line(result)
    result = edge_app("--headless", "--source", str(tmp_path / "nope.mp4"), "--delegate", "edgetpu")
    assert result.returncode == ExitCode.DELEGATE and one_error_line(result) == f"edge-app: error: {NO_EDGETPU}"


@pytest.mark.skipif(opencv_gui_backend() is not None, reason="this OpenCV can open windows")
def test_a_window_without_gui_support_says_to_use_headless(clip) -> None:
    result = edge_app("--source", str(clip))
    assert result.returncode == ExitCode.OUTPUT and "--headless" in one_error_line(result)
