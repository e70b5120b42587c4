#!/usr/bin/env bash
# The device install and run checked in a 32-bit Raspberry Pi OS userland (Debian bookworm armhf) under qemu:
#   sudo bash tests/pi/armhf.sh [VIDEO [FRAMES]]     (see tests/pi/run.sh)
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" armhf "$@"
