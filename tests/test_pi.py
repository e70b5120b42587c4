"""The device side in a Raspberry Pi's own userland: tests/pi/run.sh under qemu-user emulation, arm64 and armhf.

Each run builds (once, then cached) a Debian bookworm root for the architecture, runs the README's Raspberry Pi
install as written, edge-app on a real video, the web view and one invoke() per shipped bundle, and compares
with this x86 machine. It skips only where emulation is impossible (no qemu-user-static, binfmt_misc cannot be
mounted); under EDGE_RECOGNITION_STRICT=1 (``.ci/run``) that skip fails. It runs when EDGE_RECOGNITION_PI_CHECK=1
(``.ci/run`` sets it; a plain pytest run skips it: minutes per architecture under emulation), both architectures at once.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pi import pi_check

REPO = Path(__file__).resolve().parent.parent
PI = REPO / "tests" / "pi"
SKIP_CODE = 77


def test_pi_scripts_shellcheck_clean() -> None:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck not found: sudo apt-get install -y shellcheck"
    scripts = sorted(str(p) for p in PI.glob("*.sh"))
    result = subprocess.run([exe, "--severity=style", *scripts], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_pi_section_is_what_the_check_runs() -> None:
    """The script reads the README's own commands: the apt line and the install.sh line must be there to be run."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Run on a Raspberry Pi", 1)[1].split("\n## ", 1)[0]
    assert "sudo apt-get install -y " in section and "python3-opencv" in section and "python3-venv" in section
    assert "sudo systemd/install.sh" in section
    assert "/opt/edge-app/venv/bin/edge-app --check-config" in section
    assert "bash tests/pi/arm64.sh" in readme  # how to run the check locally ("Tested on")


ARCHES = ("arm64", "armhf")
# The shipped bundles (models/*): each gets one invoke() compared with x86's.
SHIPPED = sorted(p.parent.name for p in (REPO / "models").glob("*/model.tflite"))


def _opted_in() -> bool:
    return os.environ.get("EDGE_RECOGNITION_PI_CHECK") == "1"


@pytest.fixture(scope="module")
def pi_runs(tmp_path_factory: pytest.TempPathFactory, shared_datasets: Path) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path, Path]]]:
    """Both architectures' tests/pi/run.sh, started together (each is one emulated process at a time, so on two
    cores they take about the time of the slower one, not the sum); each test waits for its own."""
    runs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    if not _opted_in() or platform.machine() not in ("x86_64", "AMD64"):
        yield runs
        return
    base = tmp_path_factory.mktemp("pi")
    video = base / "video.avi"
    pi_check.make_video(shared_datasets, video, 200)
    for arch in ARCHES:
        work = base / arch
        work.mkdir()
        env = {**os.environ, "EDGE_RECOGNITION_PYTHON": sys.executable, "EDGE_RECOGNITION_DATASETS": str(shared_datasets), "TMPDIR": str(work)}
        out, err = work / "stdout.txt", work / "stderr.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(["bash", str(PI / "run.sh"), arch, str(video)], stdout=stdout, stderr=stderr, env=env)
        runs[arch] = (proc, out, err)
    yield runs
    for proc, _, _ in runs.values():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("arch", ARCHES)
def test_device_side_in_pi_userland(arch: str, pi_runs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]]) -> None:
    if not _opted_in():
        pytest.skip("the emulated Raspberry Pi check is opt-in (EDGE_RECOGNITION_PI_CHECK=1, as .ci/run sets; or sudo bash tests/pi/arm64.sh): "
                    "minutes an architecture under emulation")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the emulated check runs on x86_64 hosts; this is {platform.machine()}")
    proc, out, err = pi_runs[arch]
    try:
        returncode = proc.wait(timeout=2300)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"tests/pi/run.sh {arch} ran past 2300 s:\n{out.read_text(errors='replace')[-6000:]}")
    stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    print(stdout)
    if returncode == SKIP_CODE:
        reason = (stdout.strip().splitlines() or ["(no reason printed)"])[-1]
        if os.environ.get("EDGE_RECOGNITION_STRICT") == "1":
            pytest.fail(f"strict mode: the Raspberry Pi check could not emulate {arch}: {reason}; tests/setup.sh installs qemu-user-static, mounts binfmt_misc")
        pytest.skip(reason)
    lines = stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert returncode == 0 and not failed, "\n".join(failed) + "\n" + stdout[-6000:] + stderr[-3000:]
    checks = ["readme-install", "install-prefix", "check-config", "decode-lossless", "edge-app-video", "log-json-mjpeg", "labels-agree-mjpeg",
              "edge-app-video-lossless", "log-json", "labels-agree", "web-status", "web-stream"]
    checks += [f"invoke-{bundle}" for bundle in SHIPPED] + [f"invoke-default-{bundle}" for bundle in SHIPPED]
    if arch == "armhf":
        checks.append("no-runtime-line")
    for check in checks:
        assert any(line.startswith(f"PASS {check} ") for line in lines), f"no PASS {check}:\n{stdout}"


@pytest.mark.parametrize(("machine", "pointer_bytes"), [("armv7l", 4), ("armv6l", 4), ("aarch64", 4)])
def test_missing_runtime_on_32bit_arm_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch, machine: str, pointer_bytes: int) -> None:
    """ai-edge-litert has no 32-bit ARM wheels: the error names that and both ways out (also for 32-bit Raspberry
    Pi OS on a 64-bit kernel, where uname says aarch64). The emulated armhf run checks the same line for real."""
    from edge_app import runtime
    from edge_app.errors import RuntimeMissingError

    monkeypatch.setattr(runtime, "CANDIDATES", (("edge_app_no_such_runtime.interpreter", "ai-edge-litert"),))
    monkeypatch.setattr(runtime.platform, "machine", lambda: machine)
    monkeypatch.setattr(runtime.struct, "calcsize", lambda fmt: pointer_bytes)
    runtime.get_runtime.cache_clear()
    try:
        with pytest.raises(RuntimeMissingError) as info:
            runtime.get_runtime()
    finally:
        runtime.get_runtime.cache_clear()
    message = str(info.value)
    assert "\n" not in message
    assert "ai-edge-litert has no 32-bit ARM" in message and "tflite-runtime" in message and "64-bit Raspberry Pi OS" in message


def test_missing_runtime_elsewhere_names_ai_edge_litert(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app import runtime
    from edge_app.errors import RuntimeMissingError

    monkeypatch.setattr(runtime, "CANDIDATES", (("edge_app_no_such_runtime.interpreter", "ai-edge-litert"),))
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(runtime.struct, "calcsize", lambda fmt: 8)
    runtime.get_runtime.cache_clear()
    try:
        with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
            runtime.get_runtime()
    finally:
        runtime.get_runtime.cache_clear()
