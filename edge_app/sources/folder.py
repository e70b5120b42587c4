"""A folder of images, read in name order (batch runs and tests); unreadable files are skipped and counted.

With ``recursive`` its subfolders are read too, in path order, so a class-per-folder dataset (the
layout ``train-model`` reads: ``cat/001.jpg``, ``dog/002.jpg``) can be classified as it is;
``current_file`` names each image relative to the folder, and the records carry it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import SourceError
from edge_app.sources.base import SourceSpec
from edge_app.sources.opencv import as_bgr

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"})


class FolderSource:
    """Every image file in ``target`` (with ``spec.recursive`` also in its subfolders), sorted by relative path."""

    live = False

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.folder = Path(str(spec.target))
        self.name = spec.describe()
        self.fps: float | None = spec.fps  # only used to pace --realtime runs
        self.files: list[Path] = []
        self.skipped = 0  # unreadable files met since open()
        self.current: Path | None = None  # the file of the last image read
        self.recursive = spec.recursive
        self._pos = 0

    def open(self) -> None:
        folder = self.folder
        if not folder.exists():
            raise SourceError(f"image folder {folder} does not exist: check the path, or pass a video file, a stream URL or --camera N")
        if not folder.is_dir():
            raise SourceError(f"{folder} is not a folder: pass a folder of images, or a video file as --source")
        try:
            entries = folder.rglob("*") if self.recursive else folder.iterdir()
            files = sorted((p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=lambda p: p.relative_to(folder).parts)
        except OSError as exc:
            raise SourceError(f"image folder {folder} cannot be listed ({exc.strerror}): check its permissions") from exc
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            hint = "" if self.recursive or not any(p.is_dir() for p in folder.iterdir()) else "; its subfolders are read only with --recursive"
            raise SourceError(f"image folder {folder} has no images ({kinds}): put images there or pass another folder{hint}")
        self.files = files
        self.skipped = 0
        self.current = None
        self._pos = 0

    def read(self) -> np.ndarray | None:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped += 1
                log.warning("skipping %s: not a readable image (%d skipped so far)", path, self.skipped)
                continue
            self.current = path
            return as_bgr(image)
        return None

    @property
    def current_file(self) -> str | None:
        """The last image read, relative to the folder (``cat/001.jpg``)."""
        return self.current.relative_to(self.folder).as_posix() if self.current is not None else None

    def close(self) -> None:
        self._pos = len(self.files)
