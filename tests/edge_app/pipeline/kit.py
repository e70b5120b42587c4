"""Helpers of the frame loop's parts' tests: opening the shipped model as the app does, frames, results, simple real sinks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_app.errors import OutputError
from edge_app.outputs import FrameResult
from edge_app.pipeline.modelslot import OpenModel, open_model
from edge_app.sources import Frame


def opener(folder: Path) -> Callable[[Path | None], OpenModel]:
    """What the app passes a ``ModelSlot``: open ``folder`` (or the given path) on the CPU, one interpreter thread."""
    return lambda model: open_model(model or folder, None, delegate="cpu", device=None, threads=1)


def frame(image: np.ndarray, index: int = 0, *, scale: int = 1) -> Frame:
    return Frame(image, index, time.monotonic(), scale=scale)


def result(index: int = 0) -> FrameResult:
    return FrameResult(index, time.time(), [], {"total": 1.0}, None, False)


class Collect:
    """A sink that keeps every frame and result it is given (and, for ordering checks, appends its name to ``log``)."""

    def __init__(self, name: str = "collect", log: list[str] | None = None) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.frames: list[np.ndarray] = []
        self.results: list[FrameResult] = []
        self.closed = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.frames.append(frame)
        self.results.append(result)
        self.log.append(self.name)

    def close(self) -> None:
        self.closed = True


class CollectCompressed(Collect):
    """A sink that takes the compressed frame when there is one (as the window, web view, snapshots and collecting do)."""

    def __init__(self) -> None:
        super().__init__("compressed")
        self.packets: list[np.ndarray] = []

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        self.packets.append(jpeg)
        self.results.append(result)


class Unplugged:
    """An output whose far end has gone: every write is an ``OutputError``; closing it fails too."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.writes += 1
        raise OutputError("remote display disconnected")

    def close(self) -> None:
        raise OSError("broken pipe")


class Buggy:
    """An output with a bug: every write raises something that is no ``OutputError``."""

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        raise ZeroDivisionError("division by zero")

    def close(self) -> None:
        pass
