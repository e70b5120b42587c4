"""``--collect`` on a video file keeps what the same scene from a live camera would: its intervals and gaps run on the
frames' own time (the file's position), not the wall clock of a file read flat out. A real MJPG video of real CIFAR-10
photos through the real app."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.edge_app.helpers import edge_app

pytestmark = pytest.mark.timeout(180)


def test_a_video_file_collects_on_its_own_time_not_the_reading_speed(tmp_path, cifar10_val, write_video) -> None:
    """40 s of video (40 photos, one a second, at 30 fps), read in a second or two: a 5 s gap keeps one frame per 5 s of video.
    On the wall clock (before) it kept 1 or 2 frames of the 1,200."""
    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:40], repeat=30)
    collect = tmp_path / "collect"
    ran = edge_app("--model", "cifar10", "--source", str(video), "--headless", "--collect", str(collect), "--collect-interval", "5", "--collect-min-gap", "5",
                   "--collect-below", "0", timeout=150)
    assert ran.returncode == 0, ran.stderr
    frames = sorted(json.loads(p.read_text())["frame"] for p in (collect / "inbox").glob("*.json"))
    assert len(frames) >= 6, frames  # 8 when no two 5-second marks show near-duplicate photos
    assert frames[0] == 0 and all(b - a >= 150 for a, b in itertools.pairwise(frames)), frames  # 5 s of video apart
    assert all(f % 150 == 0 for f in frames), frames  # each as soon as its gap is over, on the 5 s mark
