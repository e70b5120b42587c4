#!/usr/bin/env bash
# The device install and run checked in a 64-bit Raspberry Pi OS userland (Debian bookworm arm64) under qemu:
#   sudo bash tests/pi/arm64.sh [VIDEO [FRAMES]]     (see tests/pi/run.sh)
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" arm64 "$@"
