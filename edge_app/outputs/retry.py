"""``RetryingOutput``: how a file output outlives write errors (disk full, folder removed).

The first error is logged once, every item lost meanwhile is counted in ``dropped``, writes are
tried again every ``retry_s`` seconds, and the recovery is logged with the count. Used by the
result logs (``outputs.logsink``) and the snapshot folder (``outputs.snapshots``).
"""

from __future__ import annotations

import logging
import time


def reason(exc: OSError) -> str:
    """The short reason of an ``OSError`` (``No space left on device``) for one-line messages."""
    return exc.strerror or str(exc) or type(exc).__name__


class RetryingOutput:
    """Write-error bookkeeping for an output named ``target`` (``log /var/log/x.jsonl``) that loses ``item``s."""

    def __init__(self, target: str, item: str, retry_s: float, logger: logging.Logger) -> None:
        self.retry_s = retry_s
        self.dropped = 0  # items lost to write errors
        self.last_error: str | None = None  # set while failing
        self._target = target
        self._item = item
        self._log = logger
        self._retry_at = 0.0

    def _backing_off(self) -> bool:
        """Whether the output failed and waits for its next try; the item at hand is counted as dropped."""
        if self.last_error is None or time.monotonic() >= self._retry_at:
            return False
        self.dropped += 1
        return True

    def _failed(self, exc: OSError) -> None:
        """Count the lost item, log the first error of a run of them, and schedule the next try."""
        self.dropped += 1
        why = reason(exc)
        if self.last_error is None:
            self._log.error("cannot write %s: %s; dropping %ss and retrying every %.0f s", self._target, why, self._item, self.retry_s)
        self.last_error = why
        self._retry_at = time.monotonic() + self.retry_s

    def _succeeded(self) -> None:
        """After a successful write: log the recovery once if the output was failing."""
        if self.last_error is not None:
            self._log.warning("%s is writable again; %d %s(s) were dropped meanwhile", self._target, self.dropped, self._item)
            self.last_error = None

    def _report_dropped(self) -> None:
        """On close: say how many items write errors cost, if any."""
        if self.dropped:
            self._log.warning("%s: %d %s(s) dropped by write errors", self._target, self.dropped, self._item)
