"""Fan-out: every result to every output, isolating a failing one.

An output that raises is logged once (an ``OutputError`` as one line, anything else with its traceback) and from then
on only counted (``Output.errors``, shown in the status and the stats lines); the frame still reaches every other
output, and the loop goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edge_app.errors import OutputError
from edge_app.outputs import CompressedSink, FrameResult, Sink
from edge_app.pipeline import LOGGER

log = logging.getLogger(LOGGER)


@dataclass
class Output:
    """A sink with its name and error count (an output that fails is logged once, then counted)."""

    name: str
    sink: Sink
    errors: int = 0
    compressed: CompressedSink | None = field(init=False)  # the sink, if it takes compressed frames: checked once, not every frame

    def __post_init__(self) -> None:
        self.compressed = self.sink if isinstance(self.sink, CompressedSink) else None


def fan_out(outputs: list[Output], image: np.ndarray, result: FrameResult, packet: np.ndarray | None = None) -> None:
    """Every output gets the frame; one that can take the compressed frame gets it instead of a reduced decode."""
    for out in outputs:
        try:
            if packet is not None and out.compressed is not None:
                out.compressed.write_compressed(packet, result)
            else:
                out.sink.write(image, result)
        except OutputError as exc:
            out.errors += 1
            if out.errors == 1:
                log.error("%s failed: %s; continuing (further failures of this output are only counted)", out.name, exc)
        except Exception:
            out.errors += 1
            if out.errors == 1:
                log.exception("%s failed unexpectedly; continuing (further failures of this output are only counted)", out.name)


def close_all(outputs: Iterable[Output]) -> None:
    """Close every output; one that fails to close is a warning, and the others are still closed."""
    for out in outputs:
        try:
            out.sink.close()
        except Exception as exc:
            log.warning("closing %s failed: %s", out.name, exc)


def errors_by_name(outputs: Iterable[Output]) -> dict[str, int]:
    """``{name: errors}`` of the outputs that have failed (the status' ``output_errors``)."""
    return {o.name: o.errors for o in outputs if o.errors}
