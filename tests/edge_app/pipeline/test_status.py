"""The status board: what /status, MQTT and systemd read, from real channels and the shipped model."""

from __future__ import annotations

import time

import pytest

from edge_app.model import Classification
from edge_app.outputs import FrameResult
from edge_app.pipeline.channel import Channel
from edge_app.pipeline.modelslot import ModelSlot
from edge_app.pipeline.status import StatusBoard
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.sources import SourceSpec
from edge_app.zones import ZoneResult


def channels(*names: str) -> list[Channel]:
    zc = ZoneClassifier([], smoothing=1.0, debounce=None, k=3, threshold=0.0)
    return [Channel(n, SourceSpec(kind="opencv", target=f"{n}.avi"), zc.new_state()) for n in names]


def cat(index: int, score: float = 0.8) -> FrameResult:
    states = [ZoneResult("frame", [Classification(3, "cat", score)], "cat", 1.25, False, None)]
    return FrameResult(index, time.time(), [Classification(3, "cat", score)], {"invoke": 1.0}, None, True, states=states)


def test_a_fresh_board_shows_the_model_and_source(slot: ModelSlot) -> None:
    board = StatusBoard(channels("door"), slot)
    status = board.snapshot(prepared_on="capture thread", paused=False, output_errors={})
    assert status["state"] == "starting" and status["model"] == "cifar10" and status["model_id"] == slot.model_id
    assert status["model_path"] == str(slot.files.model) and status["delegate"] == "cpu" and status["model_reloads"] == 0  # type: ignore[union-attr]
    assert status["prepared_on"] == "capture thread" and status["paused"] is False and status["output_errors"] == {}
    assert status["source"] == "video file door.avi" and status["frames"] == 0 and status["fps"] == 0.0 and status["label"] is None
    assert "sources" not in status and "name" not in status
    assert set(status) >= {"version", "runtime", "uptime_s", "started", "inference_ms", "connected", "dropped", "reconnects", "stalls", "top", "states"}
    assert board.line() == "0.0 fps, inference 0.0 ms, 0 frames"
    board.state = "waiting"
    assert board.line() == "waiting for the source"


def test_recorded_frames_give_the_rate_the_mean_inference_and_the_label(slot: ModelSlot) -> None:
    chs = channels("door")
    board = StatusBoard(chs, slot)
    start = time.perf_counter()
    for i, invoke_ms in enumerate([2.0, 4.0, 4.0]):
        board.tick(start - 0.2 + 0.1 * i)
        board.record(cat(i), invoke_ms)
        chs[0].last_result = cat(i)
    assert board.frames == 3 and board.fps == pytest.approx(10.0) and board.first_result_at is not None
    assert board.inference_ms == pytest.approx(0.9 * (0.9 * 2.0 + 0.1 * 4.0) + 0.1 * 4.0)
    assert board.current_fps() == pytest.approx(10.0)
    assert board.line() == f"10.0 fps, inference {board.inference_ms:.1f} ms, 3 frames, cat 80%"
    status = board.snapshot(prepared_on="frame loop", paused=True, output_errors={"log x.jsonl": 2})
    assert status["frames"] == 3 and status["label"] == "cat" and status["score"] == 0.8 and status["states"] == {"frame": {"state": "cat", "dwell_s": 1.2}}
    assert status["paused"] is True and status["output_errors"] == {"log x.jsonl": 2} and status["prepared_on"] == "frame loop"


def test_several_sources_are_listed_and_summed(slot: ModelSlot) -> None:
    chs = channels("door", "yard")
    chs[1].frames = 7
    board = StatusBoard(chs, slot)
    status = board.snapshot(prepared_on="capture thread", paused=False, output_errors={})
    assert [s["name"] for s in status["sources"]] == ["door", "yard"] and status["sources"][1]["frames"] == 7
    assert status["source"] == "video file door.avi, video file yard.avi" and status["captured"] == 0 and status["connected"] is False
