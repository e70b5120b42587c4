"""DisplaySink: the one-line errors without GUI support or display, the key actions on real annotated
frames, and (only where OpenCV has a GUI and Xvfb exists) a real window under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.errors import ExitCode, OutputError
from edge_app.outputs.display import DisplaySink, KeyControls, check_display, check_gui, opencv_gui_backend, x_display_error
from edge_app.outputs.draw import draw_overlay
from tests.edge_app.framekit import classify_frames
from tests.edge_app.helpers import edge_app, one_error_line

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shown(cifar10_val: Dataset, default_model: Path) -> np.ndarray:
    frame, result = classify_frames(cifar10_val, default_model, [2500], size=(640, 480))[0]
    return draw_overlay(frame, result)


@pytest.mark.skipif(opencv_gui_backend() is not None, reason="this OpenCV has GUI support; the headless error cannot happen")
def test_headless_opencv_is_a_one_line_actionable_error() -> None:
    with pytest.raises(OutputError) as info:
        DisplaySink()
    message = str(info.value)
    assert "\n" not in message
    assert "no GUI support" in message and "opencv-python or python3-opencv" in message and "--headless" in message
    assert info.value.exit_code == ExitCode.OUTPUT


def test_missing_display_is_a_one_line_actionable_error() -> None:
    with pytest.raises(OutputError, match=r"\$DISPLAY is not set.*--headless"):
        check_display(env={}, platform="linux")
    check_display(env={"DISPLAY": ":0"}, platform="linux", probe=lambda display: None)
    with pytest.raises(OutputError, match=r"cannot open a window on display :0: not authorised; .*--headless"):
        check_display(env={"DISPLAY": ":0"}, platform="linux", probe=lambda display: "not authorised", backend="QT5")
    check_display(env={"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", backend="GTK3")
    check_display(env={"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, platform="linux", probe=lambda d: "down", backend="GTK3")  # GTK uses Wayland
    check_display(env={}, platform="darwin")
    check_display(env={}, platform="win32")


def test_cli_process_sees_the_same_line(tmp_path: Path) -> None:
    """In a fresh interpreter without $DISPLAY the sink refuses with the same one-liner, whatever OpenCV is installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = "from edge_app.outputs.display import DisplaySink\ntry:\n    DisplaySink()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)
    line = out.stdout.strip()
    assert line.startswith("OutputError ") and line.endswith("--headless") and "\n" not in line


def test_keys_quit_pause_and_snapshot(tmp_path: Path, shown: np.ndarray) -> None:
    controls = KeyControls(tmp_path / "shots")
    controls.handle(-1, shown)
    assert not controls.quit_requested and not controls.paused
    controls.handle(ord(" "), shown)
    assert controls.paused
    controls.handle(ord(" "), shown)
    assert not controls.paused
    controls.handle(ord("s"), shown, frame_index=42)
    (path,) = controls.snapshots
    assert path.parent == tmp_path / "shots" and path.suffix == ".png" and path.name.endswith("-000042.png")
    np.testing.assert_array_equal(cv2.imread(str(path)), shown)  # lossless PNG of exactly what was shown
    controls.handle(ord("q"), shown)
    assert controls.quit_requested
    esc = KeyControls()
    esc.handle(27 | 0x100000, shown)  # waitKey may carry modifier bits above the low byte
    assert esc.quit_requested


def test_snapshot_to_an_unwritable_place_is_logged_not_raised(tmp_path: Path, shown: np.ndarray, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    controls = KeyControls(blocker / "shots")
    assert controls.save_snapshot(shown) is None
    assert controls.snapshots == []
    assert "cannot save snapshot" in caplog.text


XVFB = shutil.which("xvfb-run")


def under_xvfb(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the checkout, on a fresh Xvfb display."""
    assert XVFB is not None, "xvfb-run is not installed (apt-get install xvfb; tests/setup.sh installs it)"
    return subprocess.run([XVFB, "-a", sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(opencv_gui_backend() is None, reason="the installed OpenCV is opencv-python-headless (no GUI); the error path is tested instead")
@pytest.mark.skipif(XVFB is None, reason="xvfb-run is not installed (apt-get install xvfb)")
def test_real_window_under_xvfb(tmp_path: Path, shown: np.ndarray) -> None:
    cv2.imwrite(str(tmp_path / "frame.png"), shown)
    code = (
        "import numpy as np, cv2\n"
        "from pathlib import Path\n"
        "from edge_app.model import Classification\n"
        "from edge_app.outputs import FrameResult\n"
        "from edge_app.outputs.display import DisplaySink\n"
        f"frame = cv2.imread({str(tmp_path / 'frame.png')!r})\n"
        "r = FrameResult(0, 0.0, [Classification(3, 'cat', 0.8)], {'invoke': 3.0, 'total': 9.0}, 25.0, True)\n"
        f"sink = DisplaySink('test', Path({str(tmp_path)!r}))\n"
        "for _ in range(5):\n    sink.write(frame, r)\n"
        "sink.paused = True\nsink.poll()\n"
        "assert cv2.getWindowProperty('test', cv2.WND_PROP_VISIBLE) >= 1\n"
        "sink.controls.handle(ord('s'), sink.shown)\n"
        "sink.close()\nprint('ok', len(sink.controls.snapshots))\n"
    )
    out = under_xvfb(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok 1")


@pytest.mark.skipif(opencv_gui_backend() is None, reason="the installed OpenCV is opencv-python-headless (no GUI); the error path is tested instead")
@pytest.mark.skipif(XVFB is None, reason="xvfb-run is not installed (apt-get install xvfb)")
def test_a_window_with_reduced_decoding_decodes_in_full_only_what_it_repaints(tmp_path: Path, cifar10_val: Dataset, write_video) -> None:
    """The real app with a real window under Xvfb on an MJPG file read as fast as it goes: the model gets 1/4-scale frames,
    the window shows full 640x480 ones, decoded only for its repaints (at most 50 a second), not for all 300 frames."""
    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:100], repeat=3)
    code = (
        "import logging, time\n"
        "from edge_app.app import App\n"
        "from edge_app.config import load_config\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"app = App(load_config(None, {{'source': [{str(video)!r}], 'decode': 'reduced', 'stats_interval': 0.0, 'model': 'cifar10'}}), handle_signals=False)\n"
        "t = time.monotonic()\n"
        "assert app.run() == 0\n"
        "took = time.monotonic() - t\n"
        "print('shown', app.display.shown.shape, 'decoded', app.display.decoded, 'frames', app.frames, 'seconds', round(took, 2))\n"
        "assert app.display.shown.shape == (480, 640, 3) and app.frames == 300\n"
        "assert 1 <= app.display.decoded <= 50 * took + 1 < 300, (app.display.decoded, took)\n"
    )
    out = under_xvfb(code, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "at 1/4 scale" in out.stderr and "ignored" not in out.stderr, out.stderr
    print(out.stdout.strip())  # pytest -rP shows it
    assert out.stdout.strip().startswith("shown (480, 640, 3)")


def test_x_display_probe_on_a_real_x_server_and_on_none() -> None:
    """libxcb connects to a real Xvfb and fails, without aborting the process, where no X server listens."""
    code = "import os\nfrom edge_app.outputs.display import x_display_error\nprint(x_display_error(os.environ['DISPLAY']))\n"
    out = under_xvfb(code)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stdout + out.stderr
    assert "no X server answers there" in (x_display_error(unused_display()) or "")


@pytest.mark.skipif(opencv_gui_backend() is None, reason="needs a GUI OpenCV (the headless build refuses before any display is tried)")
def test_a_set_but_unusable_display_is_one_line_not_a_qt_abort(tmp_path: Path, cifar10_val: Dataset, write_video) -> None:
    clip = write_video(tmp_path / "clip.avi", cifar10_val.x[:3])
    display = unused_display()
    result = edge_app("--source", str(clip), extra_env={"DISPLAY": display})
    assert result.returncode == ExitCode.OUTPUT, result.stderr  # not 134 (SIGABRT inside Qt)
    line = one_error_line(result)
    assert f"cannot open a window on display {display}" in line and "--headless" in line


def unused_display() -> str:
    """``:N`` for an X display number no server uses here."""
    n = next(n for n in range(77, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    return f":{n}"


def test_check_gui_agrees_with_the_build() -> None:
    if opencv_gui_backend() is None:
        with pytest.raises(OutputError):
            check_gui()
    else:
        assert isinstance(opencv_gui_backend(), str)
