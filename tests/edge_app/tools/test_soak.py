"""``edge-app soak`` for a few seconds, for real: a child edge-app with --http, one viewer, RSS samples from /proc."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.edge_app.helpers import env

pytestmark = pytest.mark.timeout(120)


def test_soak_samples_the_apps_memory_while_a_viewer_watches(tmp_path, cifar10_val, write_video) -> None:
    clip = write_video(tmp_path / "clip.avi", cifar10_val.x[:20])
    cmd = [sys.executable, "-m", "edge_app", "soak", "--source", str(clip), "--duration", "8", "--interval", "2", "--viewers", "1", "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env(), check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    samples = report["samples"]
    assert len(samples) >= 4 and samples[-1]["t_s"] >= 8
    assert all(40 < s["rss_mb"] < 600 for s in samples)  # a real process's resident memory
    assert samples[-1]["frames"] > samples[1]["frames"] > 0 and samples[-1]["parts"] > 10  # it classified, the viewer got frames
    assert isinstance(report["growth_mb_per_min"], float)


def test_soak_refuses_a_missing_video(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_app", "soak", "--source", str(tmp_path / "none.avi"), "--duration", "1"],
        capture_output=True, text=True, timeout=60, env=env(), check=False,
    )  # fmt: skip
    assert result.returncode == 5 and result.stderr.strip().startswith("edge-app: error: video file") and "Traceback" not in result.stderr
