"""``edge-app``: run the recognition loop, check a config file, or benchmark the pipeline.

    edge-app [--config FILE] [run flags]        classify frames from a camera, file, folder or stream
    edge-app --check-config --config FILE       validate the config (exit 0) or say what is wrong
    edge-app bench [--source FILE] [--json]     per-stage latency, the naive-loop comparison and,
                                                with --viewers N, the cost of N MJPEG viewers
    edge-app soak [--duration S] [--viewers N]  the app's resident memory over minutes of streaming
    edge-app review DIR [--http HOST:PORT]      label a --collect folder's frames in a browser
    edge-app doctor DIR [--model M] [--zones]   what is wrong with a photo set before training (--strict: exit 9)

Every run flag is also a config-file key (``--top-k`` is ``top_k`` in ``[classification]``); flags given override the
file. Logging goes to stderr and is configured here only. OpenCV is imported only after the flags
are parsed (``--help`` works without it), and its and FFmpeg's own console lines are silenced
unless ``-v``: the line a user reads is ours. Errors the user can fix are one line,
``edge-app: error: ...``, and a named exit code (``edge_app.errors.ExitCode``); ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_app import __version__
from edge_app.allocator import tune_malloc
from edge_app.argparsing import StrictParser
from edge_app.config import AppConfig, field_specs, load_config
from edge_app.errors import EdgeAppError, ExitCode, log_to_stderr, report_error
from edge_app.opencv_check import conflict_message, opencv_distributions, quiet_native_logs, require_opencv

log = logging.getLogger(__name__)

PROG = "edge-app"
GROUPS: dict[str, tuple[str, ...]] = {
    "model": ("model", "labels", "model_url", "model_poll", "model_seed", "threads", "prepare", "delegate", "device"),
    "source (one of --camera, --source (repeatable), --picamera; default: camera 0)": (
        "camera",
        "source",
        "picamera",
        "width",
        "height",
        "fps",
        "realtime",
        "loop",
        "recursive",
        "decode",
        "open_timeout",
        "watchdog",
    ),
    "classification": ("top_k", "threshold", "smoothing", "zone", "debounce"),
    "outputs": (
        "headless",
        "log",
        "log_format",
        "log_changes_only",
        "log_max_bytes",
        "snapshots",
        "snapshot_max",
        "snapshot_min_score",
        "snapshot_interval",
        "collect",
        "collect_interval",
        "collect_min_gap",
        "collect_below",
        "collect_max_files",
        "collect_max_mb",
        "http",
        "http_token",
        "http_hosts",
        "mqtt",
        "mqtt_prefix",
        "mqtt_device",
        "mqtt_every",
    ),
    "run control": ("max_frames", "duration", "stats_interval"),
}
METAVARS = {
    "model": "PATH",
    "labels": "FILE",
    "source": "[NAME=]FILE|DIR|URL|N",
    "camera": "N",
    "log": "FILE",
    "snapshots": "DIR",
    "collect": "DIR",
    "http": "HOST:PORT",
    "http_hosts": "NAME",
    "mqtt": "URL",
    "device": "usb[:N]|pci[:N]",
    "zone": "NAME:X,Y,W,H",
    "model_url": "URL",
}


# ---------------------------------------------------------------------- logging


def configure_logging(verbose: int = 0, quiet: int = 0, debug: bool = False) -> None:
    """One stderr handler for the whole process: INFO by default, -v DEBUG, -q WARNING, -qq ERROR."""
    level = logging.DEBUG if debug or verbose > 0 else {0: logging.INFO, 1: logging.WARNING}.get(quiet, logging.ERROR)
    # journald stamps every line itself; a terminal gets the time
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    log_to_stderr(level, fmt, datefmt="%H:%M:%S", capture_warnings=True)


def load_opencv(verbose: bool) -> None:
    """Import OpenCV (one line naming the extras when it is missing) with its own logging quiet unless ``verbose``.

    OpenCV's and FFmpeg's lines ("can't open camera by index", "[tcp @ 0x...] Connection refused")
    repeat what our one-line errors say; ``-v`` shows them. Warns when two OpenCV builds share ``cv2``.
    """
    quiet_native_logs(verbose)
    cv2 = require_opencv()
    levels = getattr(getattr(cv2, "utils", None), "logging", None)  # not in OpenCV 4.6 (Debian/Raspberry Pi OS Bookworm apt)
    if levels is not None:
        levels.setLogLevel(levels.LOG_LEVEL_WARNING if verbose else levels.LOG_LEVEL_SILENT)
    conflict = conflict_message(opencv_distributions())
    if conflict:
        log.warning("%s", conflict)


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("messages")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug messages)")
    group.add_argument("-q", "--quiet", action="count", default=0, help="warnings only (-qq: errors only)")
    group.add_argument("--debug", action="store_true", help="debug messages and a traceback with every error")


def report(exc: BaseException, debug: bool) -> int:
    """Print the one-line error (and with ``debug`` the traceback); the exit code."""
    return report_error(PROG, exc, debug=debug, logger=log)


# ---------------------------------------------------------------------- run / check-config


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(
        prog=PROG,
        usage=f"{PROG} [run flags]  |  {PROG} {{{','.join(SUBCOMMANDS)}}} ...",
        description="Real-time image classification with an int8 LiteRT model: camera, video file, image folder or stream in; "
        "window, JSONL/CSV log, snapshots, web view or MQTT out.",
        epilog="subcommands (each has --help):\n"
        + "".join(f"  {PROG} {name:<8} {text}\n" for name, (_, text) in SUBCOMMANDS.items())
        + "\nEvery run flag is also a config key (--top-k is top_k in [classification]); see systemd/config.example.toml.\n"
        "Exit codes: 0 ok, 2 usage, 3 config, 4 model, 5 source, 6 delegate, 7 output, 8 no runtime, 9 doctor --strict findings.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (flags given here override it)")
    parser.add_argument("--check-config", action="store_true", help="validate the config and the model files, print the settings, exit")
    specs = field_specs()
    for title, keys in GROUPS.items():
        group = parser.add_argument_group(title)
        for key in keys:
            spec = specs[key]
            kwargs: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": _help(spec.help, spec.default)}
            if spec.kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif spec.kind is tuple:
                kwargs.update(action="append", type=str, metavar=METAVARS.get(key, "TEXT"))
            else:
                kwargs["type"] = {int: int, float: float}.get(spec.kind, str)
                kwargs["metavar"] = METAVARS.get(key) or ("|".join(spec.rules["choices"]) if "choices" in spec.rules else _metavar(spec.kind))
            group.add_argument(spec.flag, **kwargs)
    add_logging_flags(parser)
    return parser


def _metavar(kind: type) -> str:
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _help(text: str, default: object) -> str:
    text = text.replace("%", "%%")
    if default not in (None, False) and "default" not in text:
        text += f" (default: {default})"
    return text


def check_config(config: AppConfig, path: Path | None) -> int:
    """Check what a run checks before its first frame (``edge_app.preflight``), without starting capture; print the settings."""
    from edge_app.preflight import check_run  # noqa: PLC0415 - imports OpenCV, so only once require_opencv() passed

    checked = check_run(config)
    where = f" ({path})" if path else ""
    print(f"{PROG}: config OK{where}")
    for line in checked:
        print(f"  {line}")
    for line in config.describe():
        if not line.startswith(("model =", "source =", "http =", "log =")):
            print(f"  {line}")
    return int(ExitCode.OK)


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    try:
        reserved = {"config", "check_config", "verbose", "quiet", "debug"}
        overrides = {k: v for k, v in vars(args).items() if k not in reserved}
        config = load_config(args.config, overrides)
        load_opencv(verbose=args.verbose > 0 or args.debug)
        if args.check_config:
            return check_config(config, args.config)
        tune_malloc()  # before the first frame: keeps a months-long run's memory flat
        from edge_app.app import App  # noqa: PLC0415 - imports OpenCV, so only once require_opencv() passed

        return App(config).run()
    except (KeyboardInterrupt, Exception) as exc:
        return report(exc, args.debug)


def run_bench(argv: Sequence[str]) -> int:
    try:
        load_opencv(verbose="-v" in argv or "--verbose" in argv or "--debug" in argv)
    except EdgeAppError as exc:
        return report(exc, debug=False)
    from edge_app.tools import bench  # noqa: PLC0415 - imports OpenCV, so only once require_opencv() passed

    tune_malloc()  # the bench measures the app as it runs
    parser = StrictParser(prog=f"{PROG} bench", description=bench.DESCRIPTION)
    bench.add_arguments(parser)
    add_logging_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet + 1, args.debug)  # the table is the output: warnings only unless -v
    try:
        return bench.run(args)
    except (KeyboardInterrupt, Exception) as exc:
        return report(exc, args.debug)


def _run_tool(name: str, module: Any, argv: Sequence[str]) -> int:
    """``edge-app NAME ...``: a subcommand with its own flags (``module.add_arguments``) and ``module.run(args)``."""
    parser = StrictParser(prog=f"{PROG} {name}", description=module.DESCRIPTION)
    module.add_arguments(parser)
    add_logging_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    try:
        return int(module.run(args))
    except (KeyboardInterrupt, Exception) as exc:
        return report(exc, args.debug)


def run_soak(argv: Sequence[str]) -> int:
    from edge_app.tools import soak  # noqa: PLC0415 - a workstation tool, imported only when asked for

    return _run_tool("soak", soak, argv)


def run_review(argv: Sequence[str]) -> int:
    from edge_app import review  # noqa: PLC0415 - needs the [review] extra, imported only when asked for

    return _run_tool("review", review, argv)


def run_doctor(argv: Sequence[str]) -> int:
    try:
        load_opencv(verbose="-v" in argv or "--verbose" in argv or "--debug" in argv)
    except EdgeAppError as exc:
        return report(exc, debug=False)
    from edge_app import doctor  # noqa: PLC0415 - imports OpenCV, so only once require_opencv() passed

    return _run_tool("doctor", doctor, argv)


SUBCOMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "bench": (run_bench, "per-stage latency, FPS and CPU a frame, the naive-loop comparison, the cost of N viewers"),
    "soak": (run_soak, "the app's resident memory and threads over minutes of streaming to viewers"),
    "review": (run_review, "label a --collect folder's frames in a browser (the workstation mode of the review page)"),
    "doctor": (run_doctor, "check a photo set before training: imbalance, small photos, duplicates, mislabels, no 'none' class"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``edge-app`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]][0](args[1:])
    if args and not args[0].startswith("-"):
        guess = difflib.get_close_matches(args[0], list(SUBCOMMANDS), n=1, cutoff=0.6)
        if guess:
            print(f"{PROG}: error: unknown subcommand {args[0]!r} (did you mean {PROG} {guess[0]}?); {PROG} --help lists them", file=sys.stderr)
            return int(ExitCode.USAGE)
    return run(args)
