"""Domain exceptions of the workstation tools; the CLIs turn them into one-line messages and named exit codes (edge_app.errors)."""

from edge_app.errors import DomainError, ToolExitCode


class ConverterError(DomainError):
    """Base class: an error the user can fix, reported as one line."""

    exit_code = ToolExitCode.ERROR


class DataError(ConverterError):
    """A dataset is missing, empty, unreadable or inconsistent."""

    exit_code = ToolExitCode.DATA


class MixedSizesError(DataError):
    """A class-per-folder dataset holds images of several sizes and no target size was given."""


class ModelError(ConverterError):
    """A model file is missing, unreadable or incompatible."""

    exit_code = ToolExitCode.MODEL


class QuantizationError(ConverterError):
    """The int8 model is not good enough or could not be produced."""

    exit_code = ToolExitCode.QUALITY
