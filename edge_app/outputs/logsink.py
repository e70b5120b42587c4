"""Result logs: one record per line as JSON Lines or CSV, with size-based rotation.

Each record is encoded first and then written with a single ``os.write`` on an ``O_APPEND``
descriptor (no Python buffering), so a killed process never leaves half a line; a short write
(disk full) is truncated back. ``fsync=True`` also forces every line to the disk.

A log that cannot be opened at start is a one-line ``OutputError``. Later write errors (disk full,
folder removed) are logged once, the records are counted in ``dropped``, and the file is reopened
every ``retry_s`` seconds: the frame loop never stops because of its log.

A log file (or its folder) deleted or moved away while the app runs would otherwise swallow every
later record, written to an inode nobody can read. Before each write the path is checked against the
open file (``stat`` of the path versus ``fstat`` of the descriptor: a few microseconds); when they
differ the folder and the file are recreated, which is said once, and records are never lost to it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_app.config.values import LOG_EXTENSIONS
from edge_app.errors import ConfigError, OutputError
from edge_app.outputs import FrameResult
from edge_app.outputs.retry import RetryingOutput, reason

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10_000_000
DEFAULT_BACKUPS = 5
DEFAULT_RETRY_S = 5.0


class RotatingLineLog(RetryingOutput, ABC):
    """Append-only lines with rotation to ``path.1`` .. ``path.N``; subclasses turn a result into a line."""

    header: bytes = b""  # written first in every new file (CSV column names)

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        changes_only: bool = False,
        fsync: bool = False,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"log max_bytes must be a positive number of bytes, got {max_bytes}; e.g. 10000000 for 10 MB")
        if backups < 0:
            raise ConfigError(f"log backups must be 0 or more, got {backups}; it is how many rotated files (log.1 .. log.N) to keep")
        self.path = Path(path)
        super().__init__(f"log {self.path}", "record", retry_s, log)
        self.max_bytes = max_bytes
        self.backups = backups
        self.changes_only = changes_only
        self.fsync = fsync
        self.written = 0  # records written
        self.rotations = 0
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._size = 0
        self._closed = False
        self.recreated = 0  # times the file was found deleted or replaced and opened again
        try:
            self._open()
        except OSError as exc:
            raise OutputError(f"cannot open log file {self.path}: {reason(exc)}; choose a writable location or fix the folder's permissions") from exc

    # ------------------------------------------------------------------ encoding

    @abstractmethod
    def encode(self, result: FrameResult) -> bytes:
        """One complete line (ending in ``\\n``) for ``result``."""

    def header_matches(self, first_line: bytes) -> bool:
        """Whether an existing file's first line fits this format (else it is rotated away before appending)."""
        return not self.header or first_line == self.header

    # ------------------------------------------------------------------ file handling

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.header and self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as f:
                first = f.readline()
            if not self.header_matches(first):
                log.warning("%s has other columns than this log writes; moving it to %s.1", self.path, self.path)
                self._shift_backups()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        st = os.fstat(self._fd)
        self._inode = (st.st_dev, st.st_ino)
        self._size = st.st_size
        if self._size == 0 and self.header:
            self._append(self.header)

    def _append(self, data: bytes) -> None:
        """Write ``data`` with one ``write()``; a partial write is cut back off and raised as ``OSError``."""
        assert self._fd is not None
        try:
            n = os.write(self._fd, data)
        except OSError:
            self._truncate_to(self._size)
            raise
        if n != len(data):
            self._truncate_to(self._size)
            raise OSError(28, "short write (disk full?)")
        if self.fsync:
            os.fsync(self._fd)
        self._size += n

    def _truncate_to(self, size: int) -> None:
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_size > size:
                os.ftruncate(self._fd, size)
        except OSError:
            pass  # not a regular file, or the file system is gone; the next reopen starts clean

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                log.debug("closing %s: %s", self.path, exc)
            self._fd = None
            self._inode = None

    def _gone(self) -> bool:
        """Whether the open file is no longer at ``path`` (deleted, moved, or its folder removed)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def _reopen_if_gone(self) -> None:
        if self._fd is None or not self._gone():
            return
        self._close_fd()
        self.recreated += 1
        log.warning(
            "log file %s was deleted or moved away while in use; recreating it (and its folder) and writing on there%s",
            self.path,
            "" if self.recreated == 1 else f" (time {self.recreated})",
        )
        self._open()

    def _shift_backups(self) -> None:
        """``path.(N-1)`` -> ``path.N`` ... ``path`` -> ``path.1`` (or deleted when ``backups`` is 0)."""
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _rotate(self) -> None:
        self._close_fd()
        self._shift_backups()
        self.rotations += 1
        self._open()

    # ------------------------------------------------------------------ Sink

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self._closed or (self.changes_only and not result.changed):
            return
        line = self.encode(result)
        if self._fd is None:
            if self._backing_off():
                return
            try:
                self._open()
            except OSError as exc:
                self._failed(exc)
                return
        try:
            self._reopen_if_gone()
            if self._size > len(self.header) and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._append(line)
        except OSError as exc:
            self._failed(exc)
            return
        self._succeeded()
        self.written += 1

    def _failed(self, exc: OSError) -> None:
        super()._failed(exc)
        self._close_fd()

    def close(self) -> None:
        self._closed = True
        self._close_fd()
        self._report_dropped()


class JsonlLogSink(RotatingLineLog):
    """One JSON object per line: ``FrameResult.to_json_dict()``."""

    def encode(self, result: FrameResult) -> bytes:
        return (json.dumps(result.to_json_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _state_columns(rec: dict[str, Any]) -> tuple[str, str]:
    """``state``/``dwell_s`` cells: the whole frame's, or ``door=open|gate=closed`` for zones (empty without --debounce/--zone)."""
    if "zones" in rec:
        zones = rec["zones"].items()
        return ("|".join(f"{n}={z['state'] or ''}" for n, z in zones),
                "|".join(f"{n}={'' if z['dwell_s'] is None else z['dwell_s']}" for n, z in zones))
    if "state" in rec:
        return (rec["state"] or "", "" if rec["dwell_s"] is None else str(rec["dwell_s"]))
    return "", ""


class CsvLogSink(RotatingLineLog):
    """One row per record with a header in every file; ``top`` holds ``label:score`` pairs joined by ``|``;
    ``state``/``dwell_s`` hold the debounced state (``door=open|gate=closed`` with zones)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "time", "epoch", "frame", "label", "score", "top", "fps",
        "capture_ms", "preprocess_ms", "invoke_ms", "draw_ms", "total_ms", "changed", "source", "file", "model",
        "state", "dwell_s",
    )  # fmt: skip
    header = (",".join(COLUMNS) + "\r\n").encode()

    def header_matches(self, first_line: bytes) -> bool:
        return first_line.rstrip(b"\r\n") == self.header.rstrip(b"\r\n")

    def encode(self, result: FrameResult) -> bytes:
        rec = result.to_json_dict()
        top = rec["top"]
        lat = rec["latency_ms"]
        row = [
            rec["time"],
            rec["epoch"],
            rec["frame"],
            top[0]["label"] if top else "",
            top[0]["score"] if top else "",
            "|".join(f"{c['label']}:{c['score']}" for c in top),
            "" if rec["fps"] is None else rec["fps"],
            *(lat.get(k, "") for k in ("capture", "preprocess", "invoke", "draw", "total")),
            int(rec["changed"]),
            *(rec.get(k, "") for k in ("source", "file", "model")),
            *_state_columns(rec),
        ]
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        return buf.getvalue().encode("utf-8")


LOG_FORMATS: dict[str, type[RotatingLineLog]] = {"jsonl": JsonlLogSink, "csv": CsvLogSink}


def make_log_sink(path: Path, fmt: str | None = None, **kw: Any) -> RotatingLineLog:
    """A log sink for ``path``: ``fmt`` from ``LOG_FORMATS``, or chosen by the file extension."""
    path = Path(path)
    return LOG_FORMATS[log_format_for(path, fmt)](path, **kw)


def log_format_for(path: Path, fmt: str | None = None) -> str:
    """The ``LOG_FORMATS`` key for ``path``: ``fmt``, or chosen by the file extension; a ConfigError naming the choices."""
    if fmt is None:
        fmt = LOG_EXTENSIONS.get(Path(path).suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"cannot tell the log format from {Path(path).name!r}; name it .jsonl or .csv, or set the format to one of: {', '.join(LOG_FORMATS)}"
            )
    if fmt.lower() not in LOG_FORMATS:
        raise ConfigError(f"unknown log format {fmt!r}; expected one of: {', '.join(LOG_FORMATS)}")
    return fmt.lower()
