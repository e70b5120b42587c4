"""``CollectSink``: candidate training frames saved on the device, for review and labelling.

``--collect DIR`` keeps ``DIR/inbox/`` filled with the frames (or, with zones, the zone crops) worth labelling:

* every ``collect_interval`` seconds (the ordinary scene, so every class gets examples),
* when the top label changes (the transitions),
* when the top score is below ``collect_below`` (the frames the model is unsure of: the most useful ones),

at most one per ``collect_min_gap`` seconds (of the frames' own time: a video file's position, so a file read
faster than real time collects what the same scene from a live camera would), skipping near-duplicates: a frame whose colour histogram is
within ``DUPLICATE_DISTANCE`` (Bhattacharyya distance) of one of the last saved frames of its zone is not
saved again (a camera watching an unchanging scene does not fill the inbox). Each image ``<stem>.jpg`` has
``<stem>.json`` beside it with the model's prediction, score, the reason, the zone, the frame and the model.
The inbox is bounded in files and bytes; when it is full, collecting pauses (one warning) until the review
page or the user empties it. ``DIR/train/<class>/`` is where reviewed images go (the layout ``train-model``
reads).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_app.errors import OutputError
from edge_app.outputs import FrameResult, iso_utc
from edge_app.zones import WHOLE_FRAME

if TYPE_CHECKING:
    from edge_app.model import Classification

log = logging.getLogger(__name__)

DUPLICATE_DISTANCE = 0.12  # Bhattacharyya distance of HSV histograms below which two frames count as the same scene
RECENT = 32  # saved histograms remembered per zone
JPEG_QUALITY = 92
INBOX = "inbox"
TRAIN = "train"


def histogram(image: np.ndarray) -> np.ndarray:
    """A normalised 8x8x8 HSV colour histogram (what near-duplicate detection compares)."""
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA) if image.shape[0] > 64 else image
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 8, 8], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def inbox_usage(folder: Path) -> tuple[int, int]:
    """(images, bytes) in an inbox folder."""
    files, size = 0, 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.suffix == ".jpg":
                files += 1
            if p.is_file():
                size += p.stat().st_size
    return files, size


@dataclass
class CollectSink:
    """Saves candidate frames into ``root/inbox`` (see the module doc); a sink of the frame loop."""

    root: Path
    interval_s: float = 60.0
    below: float = 0.5
    min_gap_s: float = 1.0
    max_files: int = 1000
    max_bytes: int = 500_000_000
    tag: str | None = None  # several sources: the source's name, for the whole frame's key and file names (zone names already carry it)
    saved: int = 0
    skipped_duplicates: int = 0
    _recent: dict[str, deque[np.ndarray]] = field(default_factory=dict, repr=False)
    _last_saved: dict[str, float] = field(default_factory=dict, repr=False)
    _files: int = 0
    _bytes: int = 0
    _full_warned: bool = False
    _usage_checked: float = 0.0

    def __post_init__(self) -> None:
        self.inbox = self.root / INBOX
        try:
            self.inbox.mkdir(parents=True, exist_ok=True)
            (self.root / TRAIN).mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the collect folder {self.inbox}: {exc.strerror or exc}; pass a writable --collect DIR") from None
        self._files, self._bytes = inbox_usage(self.inbox)
        self._usage_checked = time.monotonic()

    def _reasons(self, key: str, now: float, score: float, changed: bool) -> list[str]:
        reasons = []
        if score < self.below:
            reasons.append("unsure")
        if changed:
            reasons.append("change")
        last = self._last_saved.get(key)
        if last is None or now - last >= self.interval_s:
            reasons.append("interval")
        return reasons

    def write_compressed(self, jpeg: np.ndarray, result: FrameResult) -> None:
        """``--decode reduced``: the compressed frame, decoded at full size only when some zone may be collected from it."""
        now = result.scene_time()
        if not any(self._due(name, now, top, changed) for name, _, top, changed in self._items(result)):
            return
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        if frame is None:
            log.error("collect: cannot decode frame %d: not a JPEG", result.index)
            return
        self.write(frame, result)

    def _due(self, name: str, now: float, top: list[Classification], changed: bool) -> list[str]:
        """Why zone ``name``'s crop would be collected now; none while it is within its minimum gap."""
        last = self._last_saved.get(name)
        if last is not None and now - last < self.min_gap_s:
            return []
        return self._reasons(name, now, float(top[0].score) if top else 0.0, changed)

    def _items(self, result: FrameResult) -> list[tuple[str, tuple[int, int, int, int] | None, list[Classification], bool]]:
        if result.zoned and result.states:
            return [(z.name, z.box, z.top, z.state_changed) for z in result.states]
        return [(f"{self.tag}.{WHOLE_FRAME}" if self.tag else WHOLE_FRAME, None, result.top, result.changed)]

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        now = result.scene_time()  # intervals and gaps in the scene's time: a file read flat out collects what real time would
        wall = time.monotonic()
        if wall - self._usage_checked > 10:  # the review page moves files out: see the room it made
            self._files, self._bytes = inbox_usage(self.inbox)
            self._usage_checked = wall
            if self._full_warned and self._files < self.max_files and self._bytes < self.max_bytes:
                self._full_warned = False
                log.info("collect: %s has room again; collecting", self.inbox)
        for name, box, top, changed in self._items(result):
            reasons = self._due(name, now, top, changed)
            if not reasons:
                continue
            image = frame if box is None else frame[box[1] : box[3], box[0] : box[2]]
            if image.size == 0:
                continue
            hist = histogram(image)
            recent = self._recent.setdefault(name, deque(maxlen=RECENT))
            if any(cv2.compareHist(hist, h, cv2.HISTCMP_BHATTACHARYYA) < DUPLICATE_DISTANCE for h in recent):
                self.skipped_duplicates += 1
                self._last_saved[name] = now  # a still scene: wait a full interval before trying again
                continue
            if self._files >= self.max_files or self._bytes >= self.max_bytes:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("collect: %s is full (%d images, %.0f MB; limits %d, %.0f MB): paused until it is reviewed",
                                self.inbox, self._files, self._bytes / 1e6, self.max_files, self.max_bytes / 1e6)
                return
            self._save(image, name, top, reasons, result)
            recent.append(hist)
            self._last_saved[name] = now

    def _save(self, image: np.ndarray, zone: str, top: list[Classification], reasons: list[str], result: FrameResult) -> None:
        label, score = (top[0].label, float(top[0].score)) if top else (None, 0.0)
        stem = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(result.time))}-{int(result.time * 1000) % 1000:03d}-f{result.index}-{zone}"
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OutputError(f"could not encode frame {result.index} as JPEG for {self.inbox}")
        meta = {
            "image": f"{stem}.jpg", "time": iso_utc(result.time), "frame": result.index, "zone": zone, "label": label,
            "score": round(score, 4), "reasons": reasons, "model": result.model, "source": result.source,
            "top": [{"label": c.label, "score": round(float(c.score), 4)} for c in top],
        }  # fmt: skip
        try:
            tmp = self.inbox / f".{stem}.jpg.tmp"
            tmp.write_bytes(jpeg.tobytes())
            os.replace(tmp, self.inbox / f"{stem}.jpg")  # the review page never sees half an image
            sidecar = json.dumps(meta) + "\n"
            (self.inbox / f"{stem}.json").write_text(sidecar)
        except OSError as exc:
            raise OutputError(f"cannot save a collected frame in {self.inbox}: {exc.strerror or exc}") from None
        self.saved += 1
        self._files += 1
        self._bytes += len(jpeg) + len(sidecar)

    def close(self) -> None:
        if self.saved or self.skipped_duplicates:
            log.info("collect: saved %d frame(s) into %s, skipped %d near-duplicate(s)", self.saved, self.inbox, self.skipped_duplicates)
