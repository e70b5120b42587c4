"""Domain exceptions of the workstation tools; the CLIs turn them into one-line messages."""


class ConverterError(Exception):
    """Base class: an error the user can fix, reported as one line."""


class DataError(ConverterError):
    """A dataset is missing, empty, unreadable or inconsistent."""


class MixedSizesError(DataError):
    """A class-per-folder dataset holds images of several sizes and no target size was given."""


class ModelError(ConverterError):
    """A model file is missing, unreadable or incompatible."""


class QuantizationError(ConverterError):
    """The int8 model is not good enough or could not be produced."""
