#!/usr/bin/env bash
# Install (or remove) edge-app as a systemd service: a virtual environment in /opt/edge-app/venv, the unit in
# /etc/systemd/system, the config in /etc/edge-app/config.toml (never overwritten). Safe to run again: it
# upgrades the installed package and restarts the service. Run `install.sh --help` for the options.
set -euo pipefail

PROG="install.sh"
UNIT_NAME="edge-app.service"
MIN_PYTHON="3.11"

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Install edge-app as a systemd service (default), or remove it (--uninstall).

  --prefix DIR      install under DIR instead of / (DIR/opt/edge-app, DIR/etc/edge-app,
                    DIR/etc/systemd/system); systemctl is not run
  --source DIR      project checkout to install (default: the parent of this script's folder)
  --python PATH     interpreter for the virtual environment (default: python3, ${MIN_PYTHON} or newer)
  --pip-args "..."  extra pip install arguments (e.g. "--no-index --find-links /path/to/wheels")
  --no-enable       install and daemon-reload, but do not enable or (re)start the service
  --dry-run         print what would be done and change nothing
  --uninstall       stop and disable the service, remove the venv and the unit; keep the config,
                    logs and state
  --purge           with --uninstall: also remove /etc/edge-app, /var/lib/edge-app, /var/log/edge-app
  -h, --help        show this help
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

# run CMD...: execute it, or only print it with --dry-run.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf 'would run: %s\n' "$*"
    else
        "$@"
    fi
}

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(dirname "$SCRIPT_DIR")"
PREFIX=""
PREFIX_GIVEN=0
PYTHON="python3"
PIP_ARGS=""
ENABLE=1
DRY_RUN=0
UNINSTALL=0
PURGE=0
EXTRAS=""
KEEP_NUMPY=""
BUILD_DIR=""

need_value() {
    [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --prefix) need_value "$1" "$#"; PREFIX="$2"; PREFIX_GIVEN=1; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; PREFIX_GIVEN=1; shift ;;
        --source) need_value "$1" "$#"; SOURCE="$2"; shift 2 ;;
        --source=*) SOURCE="${1#*=}"; shift ;;
        --python) need_value "$1" "$#"; PYTHON="$2"; shift 2 ;;
        --python=*) PYTHON="${1#*=}"; shift ;;
        --pip-args) need_value "$1" "$#"; PIP_ARGS="$2"; shift 2 ;;
        --pip-args=*) PIP_ARGS="${1#*=}"; shift ;;
        --no-enable) ENABLE=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || die "--purge only goes with --uninstall"
if [ "$PREFIX_GIVEN" -eq 1 ]; then
    [ -n "$PREFIX" ] || die "--prefix needs a folder, got an empty string"
    PREFIX="$(realpath -m -- "$PREFIX")"
    [ "$PREFIX" != "/" ] || PREFIX=""
fi

APP_DIR="$PREFIX/opt/edge-app"
VENV="$APP_DIR/venv"
CONF_DIR="$PREFIX/etc/edge-app"
CONFIG="$CONF_DIR/config.toml"
UNIT_DIR="$PREFIX/etc/systemd/system"
UNIT="$UNIT_DIR/$UNIT_NAME"

# systemctl only for a real install on a machine that booted with systemd.
USE_SYSTEMCTL=0
if [ "$PREFIX_GIVEN" -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    USE_SYSTEMCTL=1
fi
if [ "$PREFIX_GIVEN" -eq 0 ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "writing to /opt, /etc and systemd needs root: run 'sudo $0', or add --prefix DIR or --dry-run"
fi

cleanup() {
    [ -z "$BUILD_DIR" ] || rm -rf -- "$BUILD_DIR"
}
trap cleanup EXIT

uninstall() {
    if [ "$USE_SYSTEMCTL" -eq 1 ] && [ -e "$UNIT" ]; then
        run systemctl disable --now "$UNIT_NAME"
    fi
    [ ! -e "$UNIT" ] || run rm -f -- "$UNIT"
    [ ! -e "$VENV" ] || run rm -rf -- "$VENV"
    if [ "$DRY_RUN" -eq 0 ] && [ -d "$APP_DIR" ] && [ -z "$(ls -A -- "$APP_DIR")" ]; then
        rmdir -- "$APP_DIR"
    fi
    if [ "$PURGE" -eq 1 ]; then
        local path
        # DynamicUser= keeps the real state and log folders under private/, behind symlinks.
        for path in "$CONF_DIR" "$UNIT_DIR/$UNIT_NAME.d" \
            "$PREFIX/var/lib/edge-app" "$PREFIX/var/lib/private/edge-app" \
            "$PREFIX/var/log/edge-app" "$PREFIX/var/log/private/edge-app"; do
            if [ -e "$path" ] || [ -L "$path" ]; then
                run rm -rf -- "$path"
            fi
        done
    fi
    if [ "$USE_SYSTEMCTL" -eq 1 ]; then
        run systemctl daemon-reload
    fi
    if [ "$PURGE" -eq 1 ]; then
        say "removed edge-app with its config, logs and state"
    else
        say "removed edge-app; kept $CONFIG, $PREFIX/var/lib/edge-app and $PREFIX/var/log/edge-app (--purge removes them)"
    fi
}

check_python() {
    command -v "$PYTHON" >/dev/null ||
        die "'$PYTHON' not found: install Python ${MIN_PYTHON}+ (sudo apt-get install python3 python3-venv) or pass --python PATH"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$("$PYTHON" -V 2>&1) is too old: edge-app needs Python ${MIN_PYTHON}+ (Raspberry Pi OS Bookworm or newer), or pass --python PATH"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
        die "$PYTHON cannot create virtual environments: sudo apt-get install python3-venv"
}

# The extras to install: the system OpenCV (python3-opencv) when the interpreter has one, since the venv
# sees it through --system-site-packages; otherwise the headless OpenCV wheel. The web application (live
# view, API, /metrics, the review page: Starlette, uvicorn, prometheus-client) comes with every install;
# the integrations (MQTT) are small and pure Python.
choose_extras() {
    if "$PYTHON" -c 'import cv2' 2>/dev/null; then
        say "using the system OpenCV (python3-opencv)"
        EXTRAS="integrations"
        # apt's cv2 is built against apt's NumPy (1.24 on Bookworm): a NumPy 2 wheel in the venv would break it.
        KEEP_NUMPY="$("$PYTHON" -c 'import numpy; print("numpy==" + numpy.__version__)' 2>/dev/null || true)"
    else
        say "no system OpenCV: installing opencv-python-headless"
        EXTRAS="headless,integrations"
    fi
}

install() {
    if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -d "$SOURCE/edge_app" ]; then
        die "$SOURCE is not an edge-recognition checkout (no pyproject.toml and edge_app/): pass --source DIR"
    fi
    SOURCE="$(cd "$SOURCE" && pwd)"
    local unit_src="$SOURCE/systemd/$UNIT_NAME" config_src="$SOURCE/systemd/config.example.toml"
    [ -f "$unit_src" ] || die "$unit_src is missing: is the checkout complete?"
    [ -f "$config_src" ] || die "$config_src is missing: is the checkout complete?"
    check_python

    # Files the unprivileged service user must read.
    umask 022

    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
        say "reusing the virtual environment $VENV"
    else
        if [ -e "$VENV" ]; then
            say "$VENV is broken (Python upgraded?): recreating it"
            run rm -rf -- "$VENV"
        fi
        run mkdir -p -- "$APP_DIR"
        # --system-site-packages: Raspberry Pi OS's apt python3-picamera2 and python3-opencv stay importable.
        run "$PYTHON" -m venv --system-site-packages "$VENV"
    fi

    # Build from a clean copy, so the checkout gets no root-owned build/ or *.egg-info.
    local build pip_extra=()
    if [ -n "$PIP_ARGS" ]; then
        read -r -a pip_extra <<<"$PIP_ARGS"
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        build="<copy of $SOURCE>"
        say "would copy $SOURCE (without .git, .venv, runs, build, caches) to a temporary folder"
    else
        BUILD_DIR="$(mktemp -d)"
        build="$BUILD_DIR"
        tar -C "$SOURCE" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=./build --exclude=./dist \
            --exclude=./shared --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
            --exclude=.ruff_cache --exclude=.pytest_cache -cf - . | tar -C "$build" -xf -
    fi
    choose_extras
    run env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input --upgrade \
        "${pip_extra[@]}" "${build}[${EXTRAS}]" ${KEEP_NUMPY:+"$KEEP_NUMPY"}

    run mkdir -p -- "$UNIT_DIR" "$CONF_DIR"
    # The unit is copied verbatim, also with --prefix: DIR is a staging root (an image build, a test), so the
    # paths in the unit are those of the final system. `systemd-analyze verify --root=DIR` checks it there.
    run cp -- "$unit_src" "$UNIT"
    run chmod 0644 -- "$UNIT"
    if [ -e "$CONFIG" ]; then
        say "keeping the existing $CONFIG"
    else
        run cp -- "$config_src" "$CONFIG"
        run chmod 0644 -- "$CONFIG"
    fi

    # restart, not `enable --now`: an upgrade must replace the running code.
    local start="systemctl enable $UNIT_NAME && systemctl restart $UNIT_NAME"
    if [ "$USE_SYSTEMCTL" -eq 1 ]; then
        run systemctl daemon-reload
        if [ "$ENABLE" -eq 1 ]; then
            run systemctl enable "$UNIT_NAME"
            run systemctl restart "$UNIT_NAME"
        fi
    elif [ "$PREFIX_GIVEN" -eq 1 ]; then
        say "--prefix: systemctl not run; on the target system: systemctl daemon-reload && $start"
    else
        say "systemd is not running here; once it is: sudo systemctl daemon-reload && sudo $start"
    fi
    if [ "$ENABLE" -eq 0 ]; then
        say "not enabled (--no-enable); to start it: sudo $start"
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        say "dry run: nothing was changed"
    else
        say "installed $VENV/bin/edge-app; config: $CONFIG; logs: journalctl -u edge-app -f"
    fi
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
else
    install
fi
