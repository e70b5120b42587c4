"""Domain exceptions of the device runtime. The CLI turns each into one line and a named exit code."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    MODEL = 4
    SOURCE = 5
    DELEGATE = 6
    OUTPUT = 7
    RUNTIME = 8
    INTERRUPTED = 130


class EdgeAppError(Exception):
    """An error the user can fix; ``exit_code`` says how the process ends."""

    exit_code: ExitCode = ExitCode.ERROR


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
