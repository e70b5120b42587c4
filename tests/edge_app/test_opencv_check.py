"""One OpenCV per environment: the conflict is detected from the installed distributions' metadata, and a
missing ``cv2`` is one line naming the extras (the sdist install in tests/test_packaging.py runs that for real)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge_app.errors import ExitCode, RuntimeMissingError
from edge_app.opencv_check import conflict_message, opencv_distributions, require_opencv
from tests.edge_app.helpers import edge_app


def test_this_test_environment_has_exactly_one_opencv() -> None:
    found = opencv_distributions()
    assert len(found) == 1, conflict_message(found) or "no OpenCV distribution installed"


def test_conflict_message_names_every_build_and_the_fix() -> None:
    assert conflict_message([]) is None and conflict_message(["opencv-python"]) is None
    message = conflict_message(["opencv-python", "opencv-python-headless"])
    assert message is not None and "\n" not in message
    assert "opencv-python and opencv-python-headless" in message and "pip uninstall -y opencv-python opencv-python-headless" in message


def test_a_second_opencv_beside_this_one_is_warned_about_at_start(tmp_path: Path, cifar10_val, write_video) -> None:
    """A real second distribution's metadata (what pip writes) on the path: edge-app says so before it runs."""
    other = "opencv-python-headless" if "opencv-python" in opencv_distributions() else "opencv-python"
    dist_info = tmp_path / "site" / f"{other.replace('-', '_')}-4.99.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {other}\nVersion: 4.99.0\n")
    clip = write_video(tmp_path / "clip.avi", cifar10_val.x[:2])
    path = f"{Path(__file__).resolve().parents[2]}:{tmp_path / 'site'}"
    result = edge_app("--source", str(clip), "--headless", "--max-frames", "1", extra_env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    assert "share one cv2 module" in result.stderr and other in result.stderr


def test_require_opencv_returns_cv2_or_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_opencv().__name__ == "cv2"
    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import cv2` meets where no OpenCV is installed
    with pytest.raises(RuntimeMissingError) as info:
        require_opencv()
    assert info.value.exit_code == ExitCode.RUNTIME and "\n" not in str(info.value) and "edge-recognition[headless]" in str(info.value)
