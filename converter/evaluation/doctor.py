"""The dataset doctor before ``train-model`` (and ``retrain-model``): ``edge_app.doctor`` on a class-per-folder ``--data``.

Two passes, both warnings only (the data is never changed):

1. ``check_files`` before the photos are loaded: imbalance, photos smaller than half the input, exact and near duplicates
   (within and across classes and across the train/val split), unreadable files, empty classes (hashes only, ~1 ms a photo);
2. ``check_features`` once the transfer recipe has cached the backbone's pooled features (one plain row a photo): suspected
   mislabels, a leave-one-out nearest-neighbour vote on those features (``edge_app.doctor.check_mislabels``).

The feature rows come in the loader's order (``converter.data.datasets.load_folder``: classes sorted, files sorted,
unreadable ones skipped), then carved (``stratified_split``) and sampled (``--limit-per-class``) as ``train-model`` does;
``TrainDoctor.photos`` rebuilds that order from the file names, and the labels are checked against the loaded ones, so
a row is never matched to the wrong photo (the check is skipped, with a line saying so, if they differ).
An archive or a built-in ``--data`` is not examined (``edge-app doctor DIR`` on the extracted folder is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import BUILTIN, IMAGE_SUFFIXES, stratified_sample, stratified_split
from edge_app.doctor import DoctorError, Finding, Photo, SignatureCache, check_mislabels, examine

log = logging.getLogger(__name__)


class TrainDoctor:
    """The doctor of one training run on ``data`` (a folder; anything else is skipped): its ``findings`` so far."""

    def __init__(self, data: str | Path, image_size: tuple[int, int] | None) -> None:
        self.data = Path(data)
        self.image_size = image_size
        self.findings: list[Finding] = []
        self.skipped: str | None = None
        self.cache = SignatureCache()
        if str(data).lower().replace("_", "-") in BUILTIN or str(data).lower() in BUILTIN:
            self.skipped = "a built-in dataset"
        elif not self.data.is_dir():
            self.skipped = "an archive: extract it and run edge-app doctor DIR" if self.data.is_file() else "not a folder"

    def _warn(self, found: Sequence[Finding]) -> None:
        for f in found:
            log.warning("dataset: %s", f.message)
        self.findings += found

    def check_files(self) -> list[Finding]:
        """Pass 1 (before loading): the hash and size checks; the findings, each also a warning line."""
        if self.skipped is not None:
            if self.skipped != "a built-in dataset":
                log.info("dataset doctor skipped: --data %s is %s", self.data, self.skipped)
            return []
        try:
            found = examine(self.data, input_size=self.image_size, zones=False, cache=self.cache)
        except DoctorError as exc:  # the loader says what is wrong with the folder, in its own words
            log.debug("dataset doctor skipped: %s", exc)
            self.skipped = str(exc)
            return []
        self._warn(found)
        return found

    def _split_photos(self, split: str) -> list[Photo]:
        """The photos ``load_folder`` keeps for ``split``, in its order (classes sorted, files sorted, unreadable ones out)."""
        root = self.data / split if (self.data / split).is_dir() else self.data
        out = []
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(d.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and self._readable(f):
                    out.append(Photo(f, f.relative_to(self.data).as_posix(), split, d.name))
        return out

    def _readable(self, f: Path) -> bool:
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        if key in self.cache.signatures:  # decoded by check_files already
            return self.cache.signatures[key] is not None
        import cv2  # noqa: PLC0415 - a file the doctor did not list (a hidden one): decode it as the loader does

        data = f.read_bytes()
        return bool(data) and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None

    def photos(self, *, val_fraction: float, seed: int, limit_per_class: int | None,
               train_y: np.ndarray, val_y: np.ndarray) -> tuple[list[Photo], list[Photo]] | None:
        """The (training, validation) photos behind the loaded datasets' rows; None when they cannot be matched."""
        every = self._split_photos("train")
        names = sorted({p.label for p in every})
        y = np.array([names.index(p.label) for p in every], np.int64)
        if (self.data / "val").is_dir() and (self.data / "train").is_dir():
            train, val = every, self._split_photos("val")
        elif val_fraction == 0:
            train, val = every, []
        else:
            ti, vi = stratified_split(y, val_fraction, seed)
            train, val = [every[i] for i in ti], [every[i] for i in vi]
        if limit_per_class:
            ty = np.array([names.index(p.label) for p in train], np.int64)
            train = [train[i] for i in stratified_sample(ty, limit_per_class, seed)]
        got_train = np.array([names.index(p.label) for p in train], np.int64)
        got_val = np.array([names.index(p.label) if p.label in names else -1 for p in val], np.int64)
        if len(got_train) != len(train_y) or not np.array_equal(got_train, train_y) or len(got_val) != len(val_y) or not np.array_equal(got_val, val_y):
            return None
        return train, val

    def check_features(self, train_features: np.ndarray, val_features: np.ndarray, *, val_fraction: float, seed: int,
                       limit_per_class: int | None, train_y: np.ndarray, val_y: np.ndarray) -> list[Finding]:
        """Pass 2: suspected mislabels from the backbone's features (one row a kept photo: training, then validation)."""
        if self.skipped is not None:
            return []
        matched = self.photos(val_fraction=val_fraction, seed=seed, limit_per_class=limit_per_class, train_y=train_y, val_y=val_y)
        if matched is None:
            log.info("dataset doctor: mislabel check skipped (the folder changed while it was read: its photos no longer match the loaded ones)")
            return []
        photos = [*matched[0], *matched[1]]
        feats = [*np.asarray(train_features), *np.asarray(val_features)]
        found = check_mislabels(photos, feats)
        self._warn(found)
        return found

    def hook(self, *, val_fraction: float, seed: int, limit_per_class: int | None, train_y: np.ndarray,
             val_y: np.ndarray) -> Callable[[np.ndarray, np.ndarray], list[Finding]]:
        """``check_features`` for ``train_pretrained(..., features_hook=)``, given how the rows were carved and sampled."""
        return lambda train_features, val_features: self.check_features(
            train_features, val_features, val_fraction=val_fraction, seed=seed, limit_per_class=limit_per_class, train_y=train_y, val_y=val_y)

    def to_json(self) -> list[dict[str, Any]]:
        """The findings for the train report: kind, message, files, severity."""
        return [{"kind": f.kind, "message": f.message, "files": list(f.files), "severity": f.severity} for f in self.findings]
