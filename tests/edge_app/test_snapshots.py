"""SnapshotSink on real frames (CIFAR-10 validation images at camera size) with the shipped model's real results."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.errors import ConfigError, ExitCode, OutputError
from edge_app.outputs import FrameResult
from edge_app.outputs.snapshots import SnapshotSink
from tests.edge_app.framekit import classify_frames


@pytest.fixture(scope="module")
def frames(cifar10_val: Dataset, default_model: Path) -> list[tuple[np.ndarray, FrameResult]]:
    picks = list(range(0, len(cifar10_val), len(cifar10_val) // 40))[:40]
    return classify_frames(cifar10_val, default_model, picks, size=(320, 240))


def imread(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image


def test_saves_label_changes_as_real_jpegs(tmp_path: Path, frames) -> None:
    sink = SnapshotSink(tmp_path / "snaps")
    for frame, result in frames:
        sink.write(frame, result)
    sink.close()
    changed = [(f, r) for f, r in frames if r.changed]
    assert 1 < len(changed) < len(frames)
    files = sorted((tmp_path / "snaps").glob("*.jpg"))
    assert files == sink.files and len(files) == len(changed) == sink.saved
    for path, (frame, result) in zip(files, changed, strict=True):
        assert f"-{result.index:06d}-{result.label}.jpg" in path.name
        image = imread(path)
        assert image.shape == frame.shape
        assert np.abs(image.astype(int) - frame.astype(int)).mean() < 4  # the raw frame, JPEG-compressed
    assert not list((tmp_path / "snaps").glob(".*"))  # no temporary or probe files left


def test_annotated_snapshots_carry_the_overlay(tmp_path: Path, frames) -> None:
    frame, result = frames[0]
    raw, annotated = SnapshotSink(tmp_path / "raw"), SnapshotSink(tmp_path / "ann", annotate=True)
    raw.write(frame, result)
    annotated.write(frame, result)
    a = imread(annotated.files[0]).astype(int)
    r = imread(raw.files[0]).astype(int)
    assert a.shape == r.shape == frame.shape
    assert np.abs(a[:60, :120] - r[:60, :120]).mean() > 10  # labels panel top left
    assert np.abs(a[100:160, 200:] - r[100:160, 200:]).mean() < 2  # picture untouched elsewhere


def test_min_score_saves_confident_frames(tmp_path: Path, frames) -> None:
    scores = sorted(r.score for _, r in frames)
    threshold = scores[len(scores) * 3 // 4]
    sink = SnapshotSink(tmp_path, on_change=False, min_score=threshold)
    for frame, result in frames:
        sink.write(frame, result)
    expected = [r.index for _, r in frames if r.score >= threshold]
    assert [int(p.name.split("-")[2]) for p in sink.files] == expected
    throttled = SnapshotSink(tmp_path / "t", on_change=False, min_score=0.0, min_interval_s=60)
    for frame, result in frames:
        throttled.write(frame, result)
    assert throttled.saved == 1


def test_folder_stays_bounded_and_keeps_other_files(tmp_path: Path, frames) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "photo.jpg").write_bytes(b"not ours")
    sink = SnapshotSink(tmp_path, max_files=5, on_change=False, min_score=0.0)
    for n, (frame, result) in enumerate(frames[:12]):
        sink.write(frame, replace(result, index=n, time=result.time + n))
    ours = sorted(tmp_path.glob("snap-*.jpg"))
    assert len(ours) == 5 and sink.deleted == 7
    assert [int(p.name.split("-")[2]) for p in ours] == list(range(7, 12))  # the newest five
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "photo.jpg").exists()
    again = SnapshotSink(tmp_path, max_files=3)  # a restart adopts and trims the existing snapshots
    assert [int(p.name.split("-")[2]) for p in again.files] == [9, 10, 11]


def test_unwritable_folder_is_a_one_line_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as info:
        SnapshotSink(tmp_path / "file" / "snaps")
    assert str(info.value).startswith(f"cannot write snapshots to {tmp_path / 'file' / 'snaps'}: ") and "\n" not in str(info.value)
    assert info.value.exit_code == ExitCode.OUTPUT
    with pytest.raises(ConfigError, match="max_files"):
        SnapshotSink(tmp_path, max_files=0)
    with pytest.raises(ConfigError, match="min_score"):
        SnapshotSink(tmp_path, min_score=80)


def test_write_errors_are_logged_once_counted_and_retried(tmp_path: Path, frames, caplog) -> None:
    folder = tmp_path / "snaps"
    sink = SnapshotSink(folder, on_change=False, min_score=0.0, retry_s=0.2)
    folder.rmdir()
    folder.write_text("the folder was replaced by a file")  # every save now fails
    caplog.set_level(logging.INFO, logger="edge_app.outputs.snapshots")
    t = time.perf_counter()
    for frame, result in frames[:10]:
        sink.write(frame, result)
    assert time.perf_counter() - t < 2.0
    assert sink.dropped == 10 and sink.saved == 0
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    folder.unlink()
    time.sleep(0.3)
    for frame, result in frames[10:13]:
        sink.write(frame, result)
    assert sink.saved == 3 and len(list(folder.glob("snap-*.jpg"))) == 3
    assert "writable again" in caplog.text
