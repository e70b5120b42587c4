"""Recycled frame buffers on a real video: a frame anyone still holds is never overwritten; released ones are reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.sources import FrameGrabber, OpenCVSource, spec_from_args
from tests.edge_app.helpers import decoded_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, cifar10_val, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("pool") / "clip.avi", cifar10_val.x[:30])


def test_frames_that_are_held_stay_intact(clip: Path) -> None:
    expected = decoded_frames(clip)
    with FrameGrabber(spec_from_args(source=clip)) as grabber:
        held = list(grabber.frames())  # every frame kept: no buffer may be reused under us
    assert len(held) == len(expected) == 30
    assert all(np.array_equal(f.image, e) for f, e in zip(held, expected, strict=True))
    assert len({id(f.image) for f in held}) == 30


def test_released_buffers_are_filled_again(clip: Path) -> None:
    expected = decoded_frames(clip)
    source = OpenCVSource(spec_from_args(source=clip))
    source.open()
    seen = []
    while (image := source.read()) is not None:
        seen.append(image.copy())  # the copy is ours; the buffer goes back to the pool
        del image
    source.close()
    assert len(seen) == 30 and all(np.array_equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert source.pool.reused >= 28  # all but the first frame or two decoded into a recycled buffer
