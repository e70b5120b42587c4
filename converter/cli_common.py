"""What every workstation command shares: logging set-up, named exit codes, one-line errors."""

from __future__ import annotations

import argparse
import enum
import logging
import os
import sys
from collections.abc import Callable

from converter.errors import ConverterError, DataError, ModelError, QuantizationError

log = logging.getLogger(__name__)


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    DATA = 3
    MODEL = 4
    QUALITY = 5
    INTERRUPTED = 130


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    if not debug:  # TensorFlow's C++ start-up chatter is noise for a user
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("absl").setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import Keras (and TensorFlow) with stderr closed: for ``-q``.

    TensorFlow's C++ start-up notices (on AVX-512 CPUs: "oneDNN custom operations are on", printed by a static
    initialiser before absl's logging starts) ignore TF_CPP_MIN_LOG_LEVEL, so only the file descriptor keeps them
    out. Import errors still surface: as Python exceptions, after stderr is back.
    """
    if "keras" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (a test's capture, an embedded interpreter)
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            import keras  # noqa: F401, PLC0415
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def run_cli(prog: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``body``; domain errors become one line on stderr and a named exit code."""
    setup_logging(args.debug, getattr(args, "quiet", False))
    codes: list[tuple[type[BaseException], Exit]] = [
        (DataError, Exit.DATA),
        (ModelError, Exit.MODEL),
        (QuantizationError, Exit.QUALITY),
        (ConverterError, Exit.ERROR),
    ]
    try:
        return body(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except (ConverterError, OSError) as exc:
        if args.debug:
            raise
        code = next((c for t, c in codes if isinstance(exc, t)), Exit.ERROR)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return code
