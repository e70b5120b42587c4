"""The frame loop on real image folders with the shipped model: every frame classified in order, round-robin over sources, fan-out, stats lines."""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_app.balance import StageBalancer
from edge_app.notify import Notifier
from edge_app.pipeline.channel import Channel
from edge_app.pipeline.fanout import Output
from edge_app.pipeline.loop import FrameLoop
from edge_app.pipeline.modelslot import ModelSlot, Swap
from edge_app.pipeline.status import StatusBoard
from edge_app.pipeline.zoneclassify import ZoneClassifier
from edge_app.sources import spec_from_args
from tests.edge_app.pipeline.kit import Collect, Unplugged

pytestmark = pytest.mark.timeout(30)


class Run:
    """A frame loop over image folders, as the app wires it (without the app)."""

    def __init__(self, slot: ModelSlot, folders: dict[str, Path], *, debounce: int | None = None, prepare_on_capture: bool = True,
                 views: list[Output] | None = None, max_frames: int | None = None) -> None:
        self.stop = threading.Event()
        self.reasons: list[str] = []
        self.zones = ZoneClassifier([], smoothing=1.0, debounce=debounce, k=3, threshold=0.0, several=len(folders) > 1)
        self.channels = [Channel(name, spec_from_args(source=str(folder)), self.zones.new_state()) for name, folder in folders.items()]
        self.board = StatusBoard(self.channels, slot)
        self.swaps: list[Swap] = []
        self.loop = FrameLoop(self.channels, slot, self.zones, self.board, balancer=StageBalancer(adaptive=False, on_capture=prepare_on_capture),
                              notifier=Notifier({}), stop=self.stop, request_stop=self.request_stop, views=views, max_frames=max_frames,
                              after_swap=self.swaps.append)

    def request_stop(self, reason: str) -> None:
        self.reasons.append(reason)
        self.stop.set()

    def __call__(self) -> None:
        several = len(self.channels) > 1
        try:
            for ch in self.channels:
                ch.start(ch.spec, self.loop.prepare(), self.loop.ready if several else None, cancel=self.stop)
            self.board.state = "running"
            self.loop.run()
        finally:
            for ch in self.channels:
                ch.stop()


@pytest.mark.parametrize("on_capture", [True, False], ids=["capture thread prepares", "frame loop prepares"])
def test_every_frame_is_classified_in_order_like_the_classifier_and_fanned_out(slot: ModelSlot, photo_folder: Path, photos: list[np.ndarray],
                                                                               on_capture: bool) -> None:
    order: list[str] = []
    view = Collect("view", order)
    run = Run(slot, {"shelf": photo_folder}, prepare_on_capture=on_capture, views=[Output("view", view)])
    record = Collect("record", order)
    run.channels[0].records.append(Output("record", record))
    run()
    assert run.reasons == ["end of source"]
    assert [r.index for r in record.results] == list(range(len(photos))) and run.board.frames == run.channels[0].frames == len(photos)
    assert order == ["view", "record"] * len(photos)  # the shared views first, the records last with the final latencies
    classifier = slot.classifier
    assert classifier is not None
    for r, image, seen in zip(record.results, photos, record.frames, strict=True):
        assert np.array_equal(seen, image)
        assert [c.label for c in r.top] == [c.label for c in classifier.classify(image, k=3)]
        assert r.model == slot.model_id and r.source == run.channels[0].grabber.name and r.file is not None  # type: ignore[union-attr]
        assert set(r.latency_ms) == {"capture", "preprocess", "invoke", "draw", "total"} and r.latency_ms["total"] >= r.latency_ms["invoke"] > 0
    assert [r.changed for r in record.results][:3] == [True, True, True]  # ten different classes first
    assert record.results[0].fps is None and record.results[-1].fps is not None and record.results[-1].fps > 0
    assert run.board.last_result is record.results[-1] and slot.last_image is not None and np.array_equal(slot.last_image, photos[-1])


def test_several_sources_take_turns_and_a_failing_output_stops_nothing(slot: ModelSlot, tmp_path: Path, photo_folder: Path, photos: list[np.ndarray],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    other = tmp_path / "other"
    shutil.copytree(photo_folder, other)
    shared = Collect()
    views = [Output("display", Unplugged()), Output("shared", shared)]
    run = Run(slot, {"door": photo_folder, "yard": other}, debounce=1, views=views)
    run()
    assert run.reasons == ["end of every source"]
    assert [ch.frames for ch in run.channels] == [len(photos), len(photos)] and run.board.frames == 2 * len(photos)
    sources = [str(r.source) for r in shared.results]
    names = [ch.grabber.name for ch in run.channels if ch.grabber is not None]
    assert sorted(sources) == sorted(names * len(photos)) and len(set(names)) == 2
    switches = sum(a != b for a, b in itertools.pairwise(sources))
    assert switches >= len(photos)  # round-robin: both folders had frames waiting, so the sources alternated, not one after the other
    assert {r.states[0].name for r in shared.results if r.states} == {"door.frame", "yard.frame"}
    assert views[0].errors == 2 * len(photos)
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        run.loop.log_stats(2 * len(photos), 1.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stats")]
    assert len(lines) == 2 and lines[0].startswith("stats door: ") and lines[1].startswith("stats yard: ")
    assert f"({len(photos)} frames in 1.0 s)" in lines[0]
    assert f"{len(photos)} frames total, dropped 0, reconnects 0, output errors {2 * len(photos)}" in lines[1]


def test_max_frames_ends_the_run_and_a_new_model_starts_the_states_afresh(slot: ModelSlot, photo_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = Run(slot, {"shelf": photo_folder}, debounce=1, max_frames=4)
    run()
    assert run.reasons == ["max_frames 4 reached"] and run.board.frames == 4
    ch = run.channels[0]
    assert ch.last_label is not None and ch.zones.debouncers[0].state is not None and ch.zones.smoothers[0].value is not None
    assert slot.classifier is not None
    run.loop.balancer = balancer = StageBalancer(window=5)
    balancer.observe(1.0, 1.0, 0.1)
    run.loop._swapped(Swap(slot.classifier, slot.classifier, slot.files, same_labels=False))  # type: ignore[arg-type]
    assert ch.last_label is None and ch.zones.debouncers[0].state is None and ch.zones.smoothers[0].value is None
    assert balancer._n == 0 and len(run.swaps) == 1
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        run.loop.log_stats(4, 2.0)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("stats: ") and "(4 frames in 2.0 s)" in line and line.endswith("4 frames total, dropped 0, reconnects 0")
