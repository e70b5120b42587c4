"""Fan-out: every output gets every result; a failing one is logged once, then only counted, and never stops the others."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_app.pipeline.fanout import Output, close_all, errors_by_name, fan_out
from tests.edge_app.pipeline.kit import Buggy, Collect, CollectCompressed, Unplugged, result


def test_a_failing_output_is_logged_once_counted_and_the_others_still_get_every_frame(caplog: pytest.LogCaptureFixture) -> None:
    image = np.full((48, 64, 3), 7, np.uint8)
    before, after = Collect("before"), Collect("after")
    outputs = [Output("before", before), Output("display", Unplugged()), Output("buggy", Buggy()), Output("after", after)]
    with caplog.at_level(logging.INFO, logger="edge_app.app"):
        for i in range(5):
            fan_out(outputs, image, result(i))
    assert [r.index for r in before.results] == [r.index for r in after.results] == [0, 1, 2, 3, 4]
    assert after.frames[0] is image
    assert [o.errors for o in outputs] == [0, 5, 5, 0]
    assert errors_by_name(outputs) == {"display": 5, "buggy": 5}
    lines = [r for r in caplog.records if r.name == "edge_app.app"]
    assert [r.getMessage() for r in lines] == [
        "display failed: remote display disconnected; continuing (further failures of this output are only counted)",
        "buggy failed unexpectedly; continuing (further failures of this output are only counted)",
    ]
    assert lines[0].levelno == lines[1].levelno == logging.ERROR
    assert lines[0].exc_info is None and lines[1].exc_info is not None and lines[1].exc_info[0] is ZeroDivisionError  # a bug keeps its traceback


def test_an_output_that_takes_compressed_frames_gets_the_packet_when_there_is_one() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    packet = np.frombuffer(b"\xff\xd8 not decoded here \xff\xd9", np.uint8)
    compressed, plain = CollectCompressed(), Collect()
    outputs = [Output("web", compressed), Output("log", plain)]
    assert outputs[0].compressed is compressed and outputs[1].compressed is None
    fan_out(outputs, image, result(0), packet)  # a reduced decode: the web view gets the JPEG, the log the small image
    fan_out(outputs, image, result(1))  # a full decode: everyone gets the image
    assert len(compressed.packets) == 1 and compressed.packets[0] is packet and compressed.frames == [image]
    assert [r.index for r in compressed.results] == [0, 1] and [r.index for r in plain.results] == [0, 1]


def test_closing_goes_on_past_an_output_that_fails_to_close(caplog: pytest.LogCaptureFixture) -> None:
    first, last = Collect(), Collect()
    with caplog.at_level(logging.WARNING, logger="edge_app.app"):
        close_all([Output("first", first), Output("display", Unplugged()), Output("last", last)])
    assert first.closed and last.closed
    assert [r.getMessage() for r in caplog.records] == ["closing display failed: broken pipe"]
