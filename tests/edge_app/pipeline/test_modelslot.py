"""The model slot with the shipped bundles: open at start (seeding a device folder), reload between frames, refuse a broken bundle, wake waiters."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_app.model import default_model_dir
from edge_app.pipeline.modelslot import ModelSlot, Swap, bundle_name
from tests.edge_app.pipeline.kit import opener


def poll_until_done(slot: ModelSlot, waiter: threading.Thread, swaps: list[Swap]) -> None:
    """The frame loop's part: poll between "frames" until the waiting thread has its answer."""
    deadline = time.monotonic() + 20.0
    while waiter.is_alive() and time.monotonic() < deadline:
        slot.poll(swaps.append)
        time.sleep(0.005)
    waiter.join(1.0)
    assert not waiter.is_alive()


def reload_in_thread(slot: ModelSlot) -> tuple[threading.Thread, list[dict[str, Any]]]:
    outcome: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: outcome.append(slot.reload_and_wait(20.0)), daemon=True)
    waiter.start()
    return waiter, outcome


def test_load_seeds_a_missing_device_folder_from_a_shipped_bundle_and_logs_the_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "model"
    slot = ModelSlot(opener(folder), threading.Event())
    assert slot.name is None
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        slot.load(folder, "cifar10")
    assert folder.is_symlink() and (folder / "model.tflite").read_bytes() == (default_model_dir("cifar10") / "model.tflite").read_bytes()
    assert slot.classifier is not None and len(slot.classifier.labels) == 10 and slot.name == "model"
    assert slot.model_id == f"model@{slot.classifier.sha256[:8]}"
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_app.app"]
    assert lines[0] == f"model folder {folder} did not exist: made it a copy of the shipped cifar10 bundle (the models page deploys there)"
    assert lines[1].startswith(f"model {folder / 'model.tflite'} ({slot.model_id}): 32x32x3 input, 10 classes, ")
    assert lines[1].endswith("on cpu, 1 interpreter thread")
    assert bundle_name(slot.files) == "model"  # type: ignore[arg-type]


def test_a_reload_swaps_the_new_bundle_in_between_frames_and_tells_the_waiter(tmp_path: Path, photos: list[np.ndarray],
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "model"
    shutil.copytree(default_model_dir("cifar10"), folder)
    slot = ModelSlot(opener(folder), threading.Event())
    slot.load(folder, None)
    old, old_id = slot.classifier, slot.model_id
    slot.last_image = photos[3]  # the newest frame: the new model must classify it before it is swapped in
    swaps: list[Swap] = []
    slot.poll(swaps.append)
    assert not swaps  # nothing requested: nothing happens
    for f in default_model_dir("cats-vs-dogs").iterdir():
        shutil.copy2(f, folder / f.name)
    waiter, outcome = reload_in_thread(slot)
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        poll_until_done(slot, waiter, swaps)
    assert outcome == [{"ok": True, "model": slot.model_id, "error": None}]
    assert slot.model_id != old_id and slot.classifier is not old and slot.reloads == 1
    assert slot.classifier is not None and slot.classifier.labels == ["cat", "dog"]
    [swap] = swaps
    assert swap.old is old and swap.new is slot.classifier and not swap.same_labels and swap.files.model == folder / "model.tflite"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reloaded")]
    assert line.startswith(f"reloaded (was {old_id}; opened in ") and f"while the old one classified): {folder / 'model.tflite'} ({slot.model_id}): " in line


def test_a_bundle_that_cannot_be_opened_is_refused_and_the_old_model_keeps_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "model"
    shutil.copytree(default_model_dir("cifar10"), folder)
    slot = ModelSlot(opener(folder), threading.Event())
    slot.load(folder, None)
    old, old_id = slot.classifier, slot.model_id
    (folder / "model.tflite").write_bytes(b"this is no flatbuffer" * 100)
    waiter, outcome = reload_in_thread(slot)
    swaps: list[Swap] = []
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        poll_until_done(slot, waiter, swaps)
    assert not swaps and slot.classifier is old and slot.model_id == old_id and slot.reloads == 0
    [result] = outcome
    assert result["ok"] is False and result["model"] == old_id and result["error"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [f"model reload refused: {result['error']}; still running {old_id}"]


def test_waiters_are_not_left_hanging_when_no_frame_comes_or_the_app_stops(slot: ModelSlot) -> None:
    t = time.perf_counter()
    assert slot.reload_and_wait(0.1) == {"ok": False, "pending": True, "model": slot.model_id, "error": "the loop has not reached the next frame yet"}
    assert time.perf_counter() - t < 2.0
    waiter, outcome = reload_in_thread(slot)  # waits up to 20 s ...
    time.sleep(0.1)
    t = time.perf_counter()
    slot._stop.set()  # ... but the app stops: shutdown wakes it
    slot.close()
    waiter.join(5.0)
    assert not waiter.is_alive() and time.perf_counter() - t < 2.0
    assert outcome[0]["pending"] is True
