"""Domain errors, named exit codes and the command-line error/logging helpers of both console-script families.

``edge-app`` (this package) and the workstation commands (``train-model``, ``convert-model``, ...: ``converter.cli``)
share what happens at the command-line boundary: a domain error (:class:`DomainError`) becomes one line on stderr,
``PROG: error: MESSAGE``, and its named exit code; Ctrl-C becomes ``PROG: interrupted`` and 130; ``--debug`` adds the
traceback; logging goes to one handler on stderr. Standard library only: the device imports it.
"""

from __future__ import annotations

import enum
import logging
import sys
from typing import ClassVar

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class ExitCode(enum.IntEnum):
    """``edge-app``'s exit codes."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    MODEL = 4
    SOURCE = 5
    DELEGATE = 6
    OUTPUT = 7
    RUNTIME = 8
    FINDINGS = 9  # edge-app doctor --strict: the photo set has findings
    INTERRUPTED = 130


class ToolExitCode(enum.IntEnum):
    """The workstation commands' exit codes (``train-model``, ``convert-model``, ``evaluate-model``, ...)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DATA = 3
    MODEL = 4
    QUALITY = 5
    INTERRUPTED = 130


class DomainError(Exception):
    """An error the user can fix: reported as one line, the process ends with ``exit_code``."""

    exit_code: ClassVar[int] = ExitCode.ERROR


class EdgeAppError(DomainError):
    """An error of the device runtime the user can fix; ``exit_code`` says how the process ends."""

    exit_code: ClassVar[int] = ExitCode.ERROR


class ConfigError(EdgeAppError):
    exit_code = ExitCode.CONFIG


class ModelError(EdgeAppError):
    """Missing, corrupt or incompatible model, labels or manifest."""

    exit_code = ExitCode.MODEL


class SourceError(EdgeAppError):
    """A camera, file, stream or folder that cannot be opened."""

    exit_code = ExitCode.SOURCE


class DelegateError(EdgeAppError):
    """A hardware delegate (Edge TPU) that cannot be loaded."""

    exit_code = ExitCode.DELEGATE


class OutputError(EdgeAppError):
    """A log, snapshot or display output that cannot be written or opened."""

    exit_code = ExitCode.OUTPUT


class RuntimeMissingError(EdgeAppError):
    """No TFLite runtime is installed."""

    exit_code = ExitCode.RUNTIME


def log_to_stderr(level: int, fmt: str = LOG_FORMAT, datefmt: str | None = None, *, capture_warnings: bool = False) -> None:
    """One handler for the whole process, on the root logger, writing to stderr (any handler set before is removed)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if capture_warnings:
        logging.captureWarnings(True)


def report_error(prog: str, exc: BaseException, *, debug: bool = False, expected: tuple[type[BaseException], ...] = (),
                 logger: logging.Logger | None = None) -> int:
    """Print ``exc`` as one line on stderr and return the exit code; with ``debug`` the traceback goes to ``logger`` first.

    A :class:`DomainError` (or one of ``expected``, e.g. ``OSError``) prints ``PROG: error: MESSAGE`` and ends with its
    ``exit_code`` (1 where it has none); Ctrl-C prints ``PROG: interrupted`` (130); anything else is reported as
    unexpected, with its type and first line, and ends with 1.
    """
    if debug:
        (logger or logging.getLogger(__name__)).error("traceback:", exc_info=exc)
    if isinstance(exc, (DomainError, *expected)):
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", ExitCode.ERROR))
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = "" if debug else " (run with --debug for the traceback)"
    print(f"{prog}: error: unexpected {type(exc).__name__}: {detail}{hint}", file=sys.stderr)
    return int(ExitCode.ERROR)
