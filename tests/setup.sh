#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian/Ubuntu machine (or Raspberry Pi OS), in one place:
# the system packages, then .venv with the project and its test tools. `.ci/run` runs this, then the tests.
#
#   bash tests/setup.sh            # then: .venv/bin/python -m pytest
#
# One OpenCV per environment: the test venv gets the GUI build ([gui], opencv-python), so the real-window
# test runs under Xvfb; the headless build is tested in its own fresh venv by tests/test_packaging.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

# System packages the tests use: real data (Fashion-MNIST), real services and tools (systemd-analyze,
# shellcheck, mosquitto, chromium and chromedriver, Xvfb and libxcb for the window, strace to kill edge-app
# between two renames of a model update), the venv module.
apt_needed=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_needed+=(dataset-fashion-mnist)
command -v systemd-analyze >/dev/null || apt_needed+=(systemd)
command -v shellcheck >/dev/null || apt_needed+=(shellcheck)
command -v mosquitto >/dev/null || apt_needed+=(mosquitto)
command -v chromium >/dev/null || apt_needed+=(chromium)
command -v chromedriver >/dev/null || apt_needed+=(chromium-driver)
command -v Xvfb >/dev/null || apt_needed+=(xvfb)
command -v xvfb-run >/dev/null || apt_needed+=(xvfb)
command -v openssl >/dev/null || apt_needed+=(openssl)
command -v strace >/dev/null || apt_needed+=(strace)
[ -n "$(ldconfig -p 2>/dev/null | grep 'libxcb.so.1 ')" ] || apt_needed+=(libxcb1)
python3 -c "import ensurepip, venv" 2>/dev/null || apt_needed+=(python3-venv)
# The emulated Raspberry Pi check (tests/pi/run.sh): qemu-user and its binfmt_misc entries, debootstrap for
# the Debian arm64/armhf roots, zstd for their cached tarballs.
{ command -v qemu-aarch64-static && command -v qemu-arm-static; } >/dev/null || apt_needed+=(qemu-user-static)
command -v update-binfmts >/dev/null || apt_needed+=(binfmt-support)
command -v debootstrap >/dev/null || apt_needed+=(debootstrap)
command -v zstd >/dev/null || apt_needed+=(zstd)
if [ "${#apt_needed[@]}" -gt 0 ]; then
    echo "setup: apt-get install ${apt_needed[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi
# binfmt_misc, so qemu-user runs the Pi roots' programs: mounted if absent, the qemu entries enabled. Where it
# cannot be mounted (a container without it), tests/test_pi.py skips with that reason (and fails under strict).
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
        echo "setup: binfmt_misc cannot be mounted here: the emulated Raspberry Pi check (tests/test_pi.py) will be skipped"
fi
if [ -e /proc/sys/fs/binfmt_misc/status ] && command -v update-binfmts >/dev/null; then
    for entry in qemu-aarch64 qemu-arm; do
        [ -e "/proc/sys/fs/binfmt_misc/$entry" ] || $SUDO update-binfmts --enable "$entry" >/dev/null 2>&1 ||
            echo "setup: could not enable the $entry binfmt_misc entry (update-binfmts --enable $entry)"
    done
fi

# The project and its test tools in .venv. [gui] and never [headless] beside it: both install the cv2
# module and the one installed last silently wins.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[workstation,pretrained,review,gui,integrations,dev]"
# MediaPipe Tasks, to check that converted models load in its ImageClassifier (tests/converter/test_metadata.py).
# Without its dependencies: they would add opencv-contrib-python, a second OpenCV.
.venv/bin/python -m pip install -q --no-deps mediapipe==0.10.35

# Exactly one OpenCV distribution, or the window test would test whichever happened to win.
.venv/bin/python - <<'PY'
import sys
from edge_app.opencv_check import conflict_message, opencv_distributions
found = opencv_distributions()
if found != ["opencv-python"]:
    sys.exit(f"setup: expected exactly opencv-python in .venv, found {found}: {conflict_message(found) or ''}")
PY
echo "setup: ready; run the tests with: .venv/bin/python -m pytest"
