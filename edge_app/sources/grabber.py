"""``FrameGrabber``: runs a ``Source`` in its own thread so capture never waits for the model.

Live sources (cameras, streams): only the newest frame is kept (older unconsumed frames are counted
as dropped). A live source that fails, ends, stalls or disappears is closed and reopened with
exponential backoff while the app keeps running; a watchdog abandons a capture whose ``read()`` has
not returned for ``read_timeout_s`` (the blocked thread is left to finish on its own and then
releases its capture) and opens a fresh one, so a stalled RTSP read never hangs the app.

Files and folders: every frame is delivered in order through a bounded queue (the reader waits for
the consumer), unless ``realtime`` paces them at the native rate (then the newest frame wins). The
end of the file ends the grabber cleanly (``get`` returns ``None`` and ``ended`` is true), or starts
again from the beginning with ``loop``.

With ``prepare`` (the classifier's preprocessing), the capture thread also turns each frame into
the model input before handing it out, so resizing overlaps the previous frame's inference instead
of adding to it; a frame whose preparation fails is handed out without an input and the consumer
prepares it itself (and sees the error).

Each capture attempt is a ``_Session``: a fresh source from the factory, opened and read in its own
daemon thread. The supervisor thread watches the session and replaces it when needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from types import TracebackType

import numpy as np

from edge_app.errors import SourceError
from edge_app.sources.base import Frame, Source, SourceSpec
from edge_app.sources.registry import make_source

log = logging.getLogger(__name__)

POLL_S = 0.05
DEFAULT_BACKOFF_S = (0.5, 10.0)
DEFAULT_QUEUE_SIZE = 8
REALTIME_FALLBACK_FPS = 30.0
FOLDER_CLOCK_STEP_S = 1.0  # an image folder's images count as taken one second apart (Frame.clock)


@dataclass
class CaptureStats:
    captured: int = 0  # frames read from the source
    delivered: int = 0  # frames handed out by get()
    dropped: int = 0  # frames replaced by a newer one before anyone took them (newest wins)
    reconnects: int = 0  # successful reopenings of a live source after a failure
    open_failures: int = 0  # reopen attempts that failed (the source is still away)
    stalls: int = 0  # captures abandoned by the watchdog (no frame for read_timeout_s)
    skipped: int = 0  # unreadable files skipped (folders)
    last_frame_time: float | None = None  # time.monotonic() of the newest captured frame
    connected: bool = False  # a capture is open right now
    last_error: str | None = None  # why the source last failed or ended early


class _FrameBuffer:
    """Newest-wins slot(s) for live sources, or a bounded FIFO with backpressure for files."""

    def __init__(self, capacity: int, newest_wins: bool, notify: threading.Event | None = None) -> None:
        self.capacity = max(1, capacity)
        self.newest_wins = newest_wins
        self.notify = notify  # set on every new frame and at the end: one consumer waiting on several buffers
        self.dropped = 0
        self.closed = False
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()

    def put(self, frame: Frame) -> bool:
        """Add a frame; waits for room unless newest wins. False once closed (nothing was added)."""
        with self._cond:
            if self.newest_wins:
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self.closed:
                    self._cond.wait(0.1)
            if self.closed:
                return False
            self._items.append(frame)
            self._cond.notify_all()
        if self.notify is not None:
            self.notify.set()
        return True

    def get(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self.notify is not None:
            self.notify.set()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def strip_inputs(self) -> None:
        """Drop the prepared model inputs of the waiting frames (the consumer prepares them again)."""
        with self._cond:
            self._items = deque(f._replace(input=None, prepare_ms=0.0) for f in self._items)

    @property
    def drained(self) -> bool:
        with self._cond:
            return self.closed and not self._items


class _Session:
    """One capture attempt: a fresh source opened and read in its own daemon thread."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.settled = threading.Event()  # open() returned or raised
        self.done = threading.Event()  # the thread has finished and closed the source
        self.opened = False
        self.abandoned = False  # the watchdog or stop() gave up on it: its frames are discarded
        self.error: Exception | None = None
        self.frames = 0
        self.skipped = 0
        self.last_activity = time.monotonic()
        self.thread: threading.Thread | None = None


class FrameGrabber:
    """Capture in a background thread; ``get(timeout)`` hands out frames and never blocks forever.

    >>> with FrameGrabber(spec_from_args(source="clip.mp4")) as grabber:
    ...     for frame in grabber.frames():
    ...         ...
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        factory: Callable[[], Source] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        backoff_s: tuple[float, float] = DEFAULT_BACKOFF_S,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
        notify: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.notify = notify  # set whenever a frame arrives or the source ends (the app's loop over several sources waits on it)
        self.prepare = prepare
        self._prepare_generation = 0  # bumped by set_prepare: inputs made with an older prepare are dropped
        self._prepare_failures = 0
        self._factory: Callable[[], Source] = factory or (lambda: make_source(spec))
        self.queue_size = queue_size
        self.backoff_s = backoff_s
        self.name = spec.describe()
        self.live = False
        self.source_fps: float | None = None  # the source's native frame rate, once open
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = CaptureStats()
        self._buffer = _FrameBuffer(1, True)
        self._session: _Session | None = None
        self._thread: threading.Thread | None = None
        self._next_index = 0
        self._skipped_before = 0
        self._clock_frames = 0  # files and folders: frames delivered so far, across --loop restarts (their own time, Frame.clock)

    # ---------------------------------------------------------------- consumer side

    def set_prepare(self, prepare: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """Use another preparation from now on (a reloaded model); frames waiting in the buffer lose their old inputs."""
        with self._lock:
            self.prepare = prepare
            self._prepare_generation += 1
            self._prepare_failures = 0
        self._buffer.strip_inputs()

    def start(self, cancel: threading.Event | None = None) -> FrameGrabber:
        """Open the source (``SourceError`` if it cannot be opened now) and start capturing.

        ``cancel`` (the app's stop request, set by SIGTERM) ends the wait for a slow open within
        ``POLL_S``: the grabber then returns unstarted and ``ended`` is true.
        """
        if self._thread is not None:
            raise RuntimeError("FrameGrabber.start() called twice")
        source = self._factory()
        self.live = bool(source.live)
        self.name = source.name
        newest_wins = self.live or self.spec.realtime
        self._buffer = _FrameBuffer(1 if newest_wins else self.queue_size, newest_wins, self.notify)
        session = self._begin(source)
        if not self._wait_settled(session, cancel):
            if cancel is not None and cancel.is_set():
                log.info("stopped while %s was still opening", self.name)
                self._buffer.close()
                return self
            raise SourceError(
                f"{self.name} did not open within {self.spec.open_timeout_s:g} s: check that it is connected and responding, or raise the open timeout"
            )
        if session.error is not None:
            if isinstance(session.error, SourceError):
                raise session.error
            raise SourceError(f"{self.name} could not be opened: {type(session.error).__name__}: {session.error}") from session.error
        fps = getattr(source, "fps", None)
        self.source_fps = float(fps) if fps else None
        self._thread = threading.Thread(target=self._supervise, args=(session,), name=f"grabber {self.name}", daemon=True)
        self._thread.start()
        log.info("capturing from %s (%s)", self.name, "live, newest frame wins" if self.live else "every frame in order")
        return self

    def get(self, timeout: float = 1.0) -> Frame | None:
        """The next frame (the newest one for live sources), or None after ``timeout`` seconds or at the end."""
        frame = self._buffer.get(timeout)
        if frame is not None:
            with self._lock:
                self._stats.delivered += 1
        return frame

    def frames(self, timeout: float = 1.0) -> Iterator[Frame]:
        """Frames until the source ends or ``stop()`` (live sources: until ``stop()``)."""
        while not self.ended:
            frame = self.get(timeout)
            if frame is not None:
                yield frame

    @property
    def ended(self) -> bool:
        """True once the source finished (or the grabber stopped) and every frame was taken."""
        return self._buffer.drained

    @property
    def reconnects(self) -> int:
        """How many times a live source was reopened (the frame loop reads it on every frame: no snapshot)."""
        return self._stats.reconnects

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        with self._lock:
            stats = replace(self._stats)
            session = self._session
        stats.dropped = self._buffer.dropped
        stats.skipped = self._skipped_before + (int(getattr(session.source, "skipped", 0)) if session is not None else 0)
        return stats

    def stop(self, timeout: float = 1.0) -> None:
        """Stop capturing and release the device; returns within about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._buffer.close()
        self._buffer.clear()  # frames nobody will take
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        session = self._session
        if session is not None:
            session.abandoned = True
            if not session.settled.is_set():  # still inside open(): nothing to release yet, and it may block for its whole timeout
                log.debug("%s: stopped while it was still opening; the opening thread is abandoned", self.name)
            elif session.thread is not None and session.thread is not threading.current_thread():
                session.thread.join(max(0.0, deadline - time.monotonic()))
            if session.settled.is_set() and not session.done.is_set():
                log.warning("%s: a read is still blocked after %.1f s; leaving it to release the device when it returns", self.name, timeout)
        with self._lock:
            self._stats.connected = False

    def __enter__(self) -> FrameGrabber:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ---------------------------------------------------------------- capture side

    def _reopen(self) -> _Session:
        """A new session on a fresh source from the factory (a factory that raises gives a failed session)."""
        try:
            source = self._factory()
        except Exception as exc:
            session = _Session(_Unavailable(self.name))
            session.error = exc
            session.settled.set()
            session.done.set()
            return session
        return self._begin(source)

    def _begin(self, source: Source) -> _Session:
        session = _Session(source)
        with self._lock:
            previous = self._session
            if previous is not None:
                self._skipped_before += int(getattr(previous.source, "skipped", 0))
            self._session = session
        session.thread = threading.Thread(target=self._capture, args=(session,), name=f"capture {self.name}", daemon=True)
        session.thread.start()
        return session

    def _wait_settled(self, session: _Session, cancel: threading.Event | None = None) -> bool:
        """Wait for ``open()`` to return; False (and the session abandoned) if it takes too long or we stop."""
        deadline = time.monotonic() + self.spec.open_timeout_s + 1.0
        while not session.settled.wait(POLL_S):
            if self._stop.is_set() or (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                session.abandoned = True
                return False
        return True

    def _capture(self, session: _Session) -> None:
        source = session.source
        try:
            source.open()
        except Exception as exc:
            session.error = exc
            session.settled.set()
            session.done.set()
            return
        if session.abandoned:  # opened too late: the supervisor has moved on
            source.close()
            session.settled.set()
            session.done.set()
            return
        session.opened = True
        session.last_activity = time.monotonic()
        with self._lock:
            self._stats.connected = True
        session.settled.set()
        interval = self._pacing_interval(source)
        # a file's frames are 1/fps apart in its own time, whatever the reading speed; an image folder's one second apart
        fps = getattr(source, "fps", None) or self.spec.fps
        step = None if self.live else (1.0 / float(fps) if fps else FOLDER_CLOCK_STEP_S)
        started = time.monotonic()
        try:
            while not session.abandoned and not self._stop.is_set():
                cpu_started = time.thread_time()
                image = source.read()
                now = time.monotonic()
                if image is None or session.abandoned:
                    break
                session.last_activity = now
                scale = int(getattr(source, "reduction", 1))
                packet = getattr(source, "packet", None) if scale > 1 else None
                if not self._deliver(session, image, now, getattr(source, "current_file", None), packet=packet, scale=scale,
                                     cpu_started=cpu_started, step=step):
                    break
                session.frames += 1
                if interval:
                    delay = started + session.frames * interval - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
        except Exception as exc:
            session.error = exc
        finally:
            try:
                source.close()
            except Exception as exc:
                log.warning("%s: closing failed: %s", self.name, exc)
            session.done.set()

    def _pacing_interval(self, source: Source) -> float:
        if self.live or not self.spec.realtime:
            return 0.0
        fps = getattr(source, "fps", None) or self.spec.fps
        if not fps:
            log.warning("%s has no native frame rate: pacing --realtime at %.0f fps", self.name, REALTIME_FALLBACK_FPS)
            fps = REALTIME_FALLBACK_FPS
        return 1.0 / float(fps)

    def _prepared(self, image: np.ndarray) -> tuple[np.ndarray | None, float, int]:
        """``prepare(image)``, its time in ms and the generation of ``prepare`` used; (None, 0) without ``prepare`` or when it fails (logged once)."""
        with self._lock:
            prepare, generation = self.prepare, self._prepare_generation
        if prepare is None:
            return None, 0.0, generation
        t = time.perf_counter()
        try:
            tensor = prepare(image)
        except Exception as exc:
            self._prepare_failures += 1
            if self._prepare_failures == 1:
                log.warning("%s: preparing a frame on the capture thread failed (%s); the frame loop will prepare such frames", self.name, exc)
            return None, 0.0, generation
        return tensor, (time.perf_counter() - t) * 1e3, generation

    def _deliver(self, session: _Session, image: np.ndarray, captured_at: float, file: str | None = None, *,
                 packet: np.ndarray | None = None, scale: int = 1, cpu_started: float | None = None, step: float | None = None) -> bool:
        tensor, prepare_ms, generation = self._prepared(image)
        cpu_ms = (time.thread_time() - cpu_started) * 1e3 if cpu_started is not None else 0.0
        with self._lock:
            if session.abandoned or self._stop.is_set():
                return False
            if generation != self._prepare_generation:  # prepared for the model that was just replaced
                tensor, prepare_ms = None, 0.0
            clock = None
            if step is not None:  # a file or folder: its own time runs on across --loop restarts and reopenings
                clock = self._clock_frames * step
                self._clock_frames += 1
            frame = Frame(image, self._next_index, captured_at, tensor, prepare_ms, file, packet, scale, cpu_ms, clock)
            self._next_index += 1
            self._stats.captured += 1
            self._stats.last_frame_time = captured_at
        return self._buffer.put(frame)

    def _supervise(self, session: _Session) -> None:
        try:
            if self.live:
                self._supervise_live(session)
            else:
                self._supervise_file(session)
        except Exception:  # never let the capture thread die silently
            log.exception("%s: capture supervisor failed", self.name)
            self._buffer.close()

    def _supervise_file(self, session: _Session) -> None:
        while True:
            while not session.done.wait(POLL_S):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            if session.error is not None:
                self._note_error(f"{type(session.error).__name__}: {session.error}")
                log.warning("%s failed after %d frames (%s); ending", self.name, session.frames, session.error)
                break
            if not self.spec.loop:
                break
            if session.frames == 0:
                log.warning("%s gave no frames in a whole pass: not looping", self.name)
                break
            log.debug("%s: end reached after %d frames, looping", self.name, session.frames)
            session = self._reopen()
            if not self._wait_settled(session) or session.error is not None:
                self._note_error(str(session.error or "reopen timed out"))
                log.warning("%s could not be reopened to loop (%s); ending", self.name, session.error or "timed out")
                break
        with self._lock:
            self._stats.connected = False
        self._buffer.close()

    def _supervise_live(self, session: _Session) -> None:
        low, high = self.backoff_s
        delay = low
        while not self._stop.is_set():
            reason = self._watch(session)
            if reason is None:
                return
            with self._lock:
                self._stats.connected = False
            self._note_error(reason)
            if session.frames > 0:
                delay = low
            log.warning("%s %s; reopening in %.1f s", self.name, reason, delay)
            while True:
                if self._stop.wait(delay):
                    return
                session = self._reopen()
                settled = self._wait_settled(session)
                if self._stop.is_set():
                    return
                if settled and session.error is None:
                    with self._lock:
                        self._stats.reconnects += 1
                    log.warning("%s reconnected", self.name)
                    break
                with self._lock:
                    self._stats.open_failures += 1
                error = session.error
                why = str(error) if isinstance(error, SourceError) else f"{self.name}: {error or 'open timed out'}"
                self._note_error(why)
                delay = min(delay * 2, high)
                log.warning("still unavailable: %s; next try in %.1f s", why, delay)

    def _watch(self, session: _Session) -> str | None:
        """Wait until the live session fails or stalls; the reason, or None when stopping."""
        limit = self.spec.read_timeout_s
        while not session.done.wait(POLL_S):
            if self._stop.is_set():
                return None
            idle = time.monotonic() - session.last_activity
            if idle > limit:
                session.abandoned = True
                with self._lock:
                    self._stats.stalls += 1
                return f"gave no frame for {idle:.1f} s (stalled); abandoning that capture"
        if self._stop.is_set():
            return None
        if session.error is not None:
            return f"failed ({type(session.error).__name__}: {session.error})"
        return f"gave no frame after {session.frames} (it ended or a read failed)"

    def _note_error(self, reason: str) -> None:
        with self._lock:
            self._stats.last_error = reason


class _Unavailable:
    """Stands in for a source the factory could not even build (its session has already failed)."""

    live = True

    def __init__(self, name: str) -> None:
        self.name = name

    def open(self) -> None:
        return None

    def read(self) -> np.ndarray | None:
        return None

    def close(self) -> None:
        return None
