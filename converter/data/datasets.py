"""One loader API for every dataset the workstation tools accept.

``load_dataset(source, split)`` returns a :class:`Dataset` (uint8 images ``(N, H, W, C)``,
integer labels and the class names) for:

* ``cifar10``: the Keras download cache or a ``cifar-10-batches-py`` folder of pickles;
* ``fashion-mnist``: the IDX files installed by Debian's ``dataset-fashion-mnist``;
* a class-per-folder tree ``<root>/<split>/<class>/*.jpg|png`` given as a folder, a
  ``.tar.gz``/``.tgz``/``.tar`` or a ``.zip``. The photos are decoded one at a time into the
  cache file (an uncompressed ``.npz``), which the returned dataset reads memory-mapped: loading
  holds one decoded photo at a time, and only the pages of the images used come into memory
  afterwards. The second load of the same tree is the cache file itself.

``stratified_split`` carves a deterministic validation split out of training data;
:class:`Rows` (``train_val_rows``) is a split that reads its images in bounded batches instead of
copying them (``convert-model``, ``retrain-model``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import pickle
import shutil
import stat
import struct
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from converter.errors import DataError, MixedSizesError
from edge_app.preprocess import fit_to_size

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
BUILTIN = ("cifar10", "fashion-mnist")
BATCH = 256  # images a batch when a split is streamed: 256 photos at 224 px are 38 MB of uint8


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 ``(N, H, W, C)`` RGB (or ``C == 1`` grey), labels as int64 ``(N,)``."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str
    skipped: int = 0
    # the file ``x`` is memory-mapped from: ``take`` and ``batches`` read rows from it with plain reads, so only the
    # copies count in memory (pages touched through a mapping stay resident, whole large folios of them)
    rows_file: RowFile | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, C), got {self.x.dtype} {self.x.shape}")
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x.shape[1:]
        return int(h), int(w), int(c)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.classes, self.name)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "rows_file": None}  # an open file does not pickle; ``x`` does (as an array)

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images ``index`` (in that order) as an array in memory."""
        index = np.asarray(index, dtype=np.int64)
        if self.rows_file is not None:
            return self.rows_file.read(index, self.x.shape[1:])
        return np.asarray(self.x[index])

    def batches(self, size: int = BATCH) -> Iterator[np.ndarray]:
        """The images in order, ``size`` at a time (each batch an array in memory, the next read when asked for)."""
        for i in range(0, len(self), size):
            yield self.take(np.arange(i, min(i + size, len(self))))

    def rows(self, index: np.ndarray | None = None) -> Rows:
        """Rows ``index`` (default: all) of this dataset, read on demand (no copy of the images)."""
        return Rows(self, np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64))



class RowFile:
    """An open file holding uint8 images back to back from ``offset``: rows read with plain reads into a new array."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fh = open(path, "rb", buffering=0)  # noqa: SIM115 - open as long as the dataset (unlinked temporary files too)
        self.offset = offset

    def read(self, index: np.ndarray, row_shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty((len(index), *row_shape), np.uint8)
        flat = out.reshape(len(index), -1)
        row = flat.shape[1]
        for k, i in enumerate(index.tolist()):
            got = os.preadv(self.fh.fileno(), [memoryview(flat[k])], self.offset + i * row)
            if got != row:
                raise DataError(f"{self.fh.name} is truncated: image {i} is missing; delete it (a dataset cache file) and rerun")
        return out

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()


@dataclass(frozen=True, eq=False)
class Rows:
    """Rows ``index`` of ``data`` (whose images may be memory-mapped from the cache): the images are read in batches of
    a bounded size (:meth:`batches`) or by index (:meth:`take`) when they are used, never all decoded into memory at
    once. It has the :class:`Dataset` attributes the converter needs (``y``, ``classes``, ``name``, ``image_shape``)."""

    data: Dataset
    index: np.ndarray

    @property
    def y(self) -> np.ndarray:
        return self.data.y[self.index]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.data.image_shape

    def __len__(self) -> int:
        return len(self.index)

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}

    def subset(self, index: np.ndarray) -> Rows:
        return Rows(self.data, self.index[np.asarray(index, dtype=np.int64)])

    def take(self, index: np.ndarray) -> np.ndarray:
        return self.data.take(self.index[np.asarray(index, dtype=np.int64)])

    def batches(self, size: int = BATCH) -> Iterator[np.ndarray]:
        for i in range(0, len(self), size):
            yield self.data.take(self.index[i : i + size])

    def load(self) -> Dataset:
        """These rows as a :class:`Dataset` in memory (for code that needs every image at once, such as training)."""
        return Dataset(self.data.take(self.index), self.y, self.classes, self.name)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"96"`` -> (96, 96); ``"96x128"`` -> (96, 128) as (height, width)."""
    if text is None or text == "":
        return None
    parts = str(text).lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise DataError(f"bad image size {text!r}: expected N or HxW, e.g. 96 or 96x128") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 8:
        raise DataError(f"bad image size {text!r}: expected N or HxW with each side >= 8")
    return dims[0], dims[1]


def load_dataset(
    source: str | os.PathLike[str],
    split: str = "train",
    image_size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Load ``split`` of a built-in dataset name or of a class-per-folder folder/archive."""
    key = str(source).lower().replace("_", "-")
    if key in {"cifar10", "cifar-10"}:
        ds = load_cifar10(split)
    elif key == "fashion-mnist":
        ds = load_fashion_mnist(split)
    else:
        ds = load_folder(Path(source), split, image_size=image_size, cache_dir=cache_dir)
        return ds
    if image_size is not None and ds.image_shape[:2] != image_size:
        ds = Dataset(resize_batch(ds.x, image_size), ds.y, ds.classes, ds.name)
    return ds


# --------------------------------------------------------------------------- images


def resize_batch(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([fit_to_size(img, size) for img in x])


def decode_image(data: bytes) -> np.ndarray | None:
    """Decode encoded image bytes to RGB uint8, or ``None`` when they are not an image."""
    if not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- folders and archives


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _split_member(rel: PurePosixPath, split: str) -> tuple[str, str] | None:
    """For a path inside a tree, return (class, file) when it is an image of ``split``."""
    if rel.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in rel.parts):
        return None
    parts = rel.parts
    if len(parts) >= 3 and parts[-3] == split:
        return parts[-2], parts[-1]
    return None


def _iter_archive(path: Path, read: bool = True) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Every file of the archive as (path inside it, bytes); ``read=False``: the names only (empty bytes)."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield PurePosixPath(info.filename), zf.read(info) if read else b""
        else:
            with tarfile.open(path) as tf:
                for member in tf:
                    if member.isfile():
                        fh = tf.extractfile(member) if read else None
                        yield PurePosixPath(member.name), fh.read() if fh else b""
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}; check that the file is complete") from exc


def _folder_root(path: Path, split: str) -> Path:
    """``<root>/<split>`` when it exists, else ``<root>`` itself as the class folders."""
    if (path / split).is_dir():
        return path / split
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()) or not any(d.iterdir()) for d in subdirs):
        return path
    raise DataError(
        f"{path} has no '{split}' folder and is not a folder of class folders; "
        f"expected {path}/{split}/<class>/<image>.jpg"
    )


def _tree_files(root: Path) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """Every file under ``root`` as (path relative to root, stat of the target, link target or None), links followed.

    Symbolic links to class folders or photos are followed (``Path.rglob`` does not descend into linked folders),
    so a photo added to a linked folder changes the fingerprint; a link loop is walked once.
    """
    seen: set[str] = set()
    for top, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(top, name)
            try:
                st = os.stat(full)  # the target's size and time when it is a link
            except OSError:  # a dangling link
                continue
            link = os.path.realpath(full) if os.path.islink(full) or real != os.path.abspath(top) else None
            yield os.path.relpath(full, root), st, link


def _fingerprint(path: Path, split: str, image_size: tuple[int, int] | None) -> str:
    h = hashlib.sha256()
    h.update(f"v2|{path.resolve()}|{split}|{image_size}".encode())
    if path.is_file():
        st = path.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        for rel, st, link in _tree_files(path):
            h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}|{link or ''}\n".encode())
    return h.hexdigest()[:24]


CACHE_LIMIT_ENV = "EDGE_RECOGNITION_CACHE_LIMIT"
# The folders of the cache's own entries beside the decoded datasets: backbone features and converted weights.
CACHE_SUBDIRS = ("features", "weights")
DEFAULT_CACHE_LIMIT = 4 * 1024**3  # bytes: a few decoded photo sets and their backbone features
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3, "T": 1024**4, "TB": 1024**4}


def default_cache_dir() -> Path:
    env = os.environ.get("EDGE_RECOGNITION_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-recognition"


def parse_bytes(text: str) -> int:
    """``"4G"`` -> 4 GiB, ``"500M"``, ``"1.5GB"``, ``"1000000"`` (bytes)."""
    t = text.strip().upper().replace("I", "")  # 4GiB too
    num = t.rstrip("KMGTB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise DataError(f"bad cache size {text!r}: expected bytes or a size such as 500M or 4G")
    return int(value * _UNITS[unit])


def cache_limit() -> int:
    """The cache's size bound in bytes: ``$EDGE_RECOGNITION_CACHE_LIMIT`` (e.g. ``10G``), else 4 GiB."""
    env = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    if not env:
        return DEFAULT_CACHE_LIMIT
    try:
        return parse_bytes(env)
    except DataError as exc:
        raise DataError(f"{CACHE_LIMIT_ENV}={env!r}: {exc}") from None


def touch_cache_entry(path: Path) -> None:
    """Mark a cache file as just used (its modification time), for least-recently-used eviction."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_cache(root: Path | None = None, limit: int | None = None, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the least recently used files under ``root`` until it holds at most ``limit`` bytes; the removed files.

    Only the cache's own entries count and go: files directly in ``root`` (decoded datasets) and in its
    ``CACHE_SUBDIRS``; other folders there (the emulated Pi check keeps its Debian roots in ``pi-roots/``) are left alone.

    Last use is a file's modification time (a cache hit touches it) or its access time, whichever is later. ``keep``
    (the entry just written) is never removed; half-written ``.tmp`` files are left alone for an hour.
    """
    root = root or default_cache_dir()
    limit = cache_limit() if limit is None else limit
    kept = {os.path.abspath(k) for k in keep}
    entries: list[tuple[float, int, str]] = []
    now = time.time()
    for top, dirs, files in os.walk(root):
        if os.path.abspath(top) == os.path.abspath(root):  # only the cache's own entries: not what others keep beside them
            dirs[:] = [d for d in dirs if d in CACHE_SUBDIRS]
        for name in files:
            full = os.path.join(top, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if ".tmp." in name and now - st.st_mtime < 3600:
                continue
            entries.append((max(st.st_atime, st.st_mtime), st.st_size, full))
    total = sum(size for _, size, _ in entries)
    removed: list[Path] = []
    for _, size, full in sorted(entries):
        if total <= limit:
            break
        if full in kept:
            continue
        try:
            os.remove(full)
        except OSError as exc:
            log.debug("could not remove cache file %s: %s", full, exc)
            continue
        total -= size
        removed.append(Path(full))
    if removed:
        log.info("cache %s over its %.1f GB bound: removed %d least recently used file(s)", root, limit / 1e9, len(removed))
    return removed


def load_folder(
    path: Path,
    split: str = "train",
    image_size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Read a class-per-folder tree from a folder or an archive of one.

    The photos are decoded one at a time and spooled to disk, then written as the cache entry (an uncompressed
    ``.npz``; with ``use_cache=False`` a temporary file, removed at once) whose images the returned dataset reads
    memory-mapped (copy-on-write): memory never holds the whole decoded set, only the pages of the images used.
    """
    if not path.exists():
        raise DataError(f"dataset not found: {path}; give a folder <root>/<split>/<class>/*.jpg, an archive of one, or cifar10 / fashion-mnist")
    cache_file: Path | None = None
    if use_cache:
        cache_limit()  # a bad $EDGE_RECOGNITION_CACHE_LIMIT is one line now, not after the images are decoded
        cache_file = (cache_dir or default_cache_dir()) / f"{path.name}-{split}-{_fingerprint(path, split, image_size)}.npz"
        if cache_file.exists():
            try:
                ds = _read_cache(cache_file)
                log.info("loaded %s from cache %s", path, cache_file)
                touch_cache_entry(cache_file)
                return ds
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, DataError) as exc:
                log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)

    empty_classes: set[str] = set()
    if is_archive(path):
        items: Iterator[tuple[str, str, bytes | Path]] = (
            (cls, name, data)
            for rel, data in _iter_archive(path)
            if (m := _split_member(rel, split)) is not None
            for cls, name in [m]
        )
    elif path.is_dir():
        root = _folder_root(path, split)
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        empty_classes = {d.name for d in class_dirs}
        items = (
            (d.name, f.name, f)
            for d in class_dirs
            for f in sorted(d.iterdir())
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive")

    work_dir = cache_file.parent if cache_file is not None else Path(tempfile.gettempdir())
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        spool = Path(tempfile.mkdtemp(prefix=".decode-", dir=work_dir))
    except OSError:  # an unwritable cache folder: spool in the temporary folder, and keep no cache
        cache_file, spool = None, Path(tempfile.mkdtemp(prefix="decode-"))
    try:
        ds = _decode_to_file(path, split, items, empty_classes=empty_classes, image_size=image_size, spool=spool, cache_file=cache_file)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    if cache_file is not None and cache_file.exists():
        prune_cache(cache_file.parent, keep=(cache_file,))
    return ds


def _decode_to_file(path: Path, split: str, items: Iterator[tuple[str, str, bytes | Path]], *, empty_classes: set[str],
                    image_size: tuple[int, int] | None, spool: Path, cache_file: Path | None) -> Dataset:
    """Decode ``items`` one at a time into one spool file per class, then write them, classes in name order, as the
    dataset file (``cache_file``, else a temporary file) and return the dataset memory-mapped from it."""
    files: dict[str, Any] = {}
    counts: dict[str, int] = {}
    shapes: set[tuple[int, ...]] = set()
    skipped = 0
    try:
        for cls, name, src in items:
            empty_classes.discard(cls)
            data = src.read_bytes() if isinstance(src, Path) else src
            img = decode_image(data)
            del data
            if img is None:
                skipped += 1
                log.warning("skipping unreadable image %s/%s/%s", split, cls, name)
                continue
            if image_size is not None:
                img = fit_to_size(img, image_size)
            shapes.add(img.shape)
            if cls not in files:
                files[cls] = open(spool / f"{len(files)}.raw", "wb")  # noqa: SIM115 - closed below
            files[cls].write(np.ascontiguousarray(img, dtype=np.uint8).tobytes())
            counts[cls] = counts.get(cls, 0) + 1
    finally:
        for fh in files.values():
            fh.close()

    if not counts and not skipped:
        raise _no_images(path, split)
    if empty_classes:
        raise DataError(f"class folder(s) with no readable images in {path} ({split}): {', '.join(sorted(empty_classes))}; add images or remove the folder")
    if not counts:
        raise DataError(f"no images found for split '{split}' in {path}; expected <root>/{split}/<class>/<image>.jpg")
    classes = tuple(sorted(counts))
    if len(classes) < 2:
        raise DataError(f"{path} ({split}) has only one class ({classes[0]}); a classifier needs at least two")
    if len(shapes) > 1:
        raise MixedSizesError(f"images in {path} have {len(shapes)} different sizes; pass --image-size (e.g. 96) to resize them")
    (shape,) = shapes
    y = np.concatenate([np.full(counts[c], i, dtype=np.int64) for i, c in enumerate(classes)])
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s (%s)", skipped, path, split)
    name = path.name.split(".")[0]
    small = {"y": y, "classes": np.array(classes), "name": np.array(name), "skipped": np.array(skipped)}
    parts = [Path(files[c].name) for c in classes]
    target = cache_file if cache_file is not None else spool / "dataset.npz"
    tmp = target.with_name(f"{target.stem}.tmp.{os.getpid()}.npz")
    try:
        _write_npz(tmp, (len(y), *shape), parts, small)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if cache_file is None:
            raise DataError(f"cannot write the decoded images of {path} ({split}) to {spool}: {exc}") from exc
        log.warning("could not write dataset cache %s: %s", cache_file, exc)  # a cache is an optimisation: load without it
        cache_file, target = None, spool / "dataset.npz"
        try:
            _write_npz(target, (len(y), *shape), parts, small)
        except OSError as exc2:
            raise DataError(f"cannot write the decoded images of {path} ({split}) to {spool}: {exc2}") from exc2
    ds = _read_cache(target)
    if cache_file is None:
        target.unlink()  # the mapping keeps the data until the dataset is gone
    return ds


def _write_npz(path: Path, shape: tuple[int, ...], parts: list[Path], small: dict[str, np.ndarray], chunk: int = 1 << 22) -> None:
    """An uncompressed ``.npz`` (what ``np.savez`` writes) whose ``x`` is the concatenation of the raw uint8 ``parts``,
    copied ``chunk`` bytes at a time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(chunk):
                        fh.write(block)
        for key, value in small.items():
            with zf.open(f"{key}.npy", "w") as fh:
                np.lib.format.write_array(fh, value, allow_pickle=False)


def _npz_memmap(path: Path, member: str = "x.npy") -> tuple[np.ndarray, RowFile | None]:
    """The array ``member`` of an uncompressed ``.npz``, memory-mapped copy-on-write (read from the file when used), and
    the file open for reading rows (:class:`RowFile`)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{member} is compressed")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad zip entry {member}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if fortran or dtype != np.uint8 or len(shape) != 4:
        raise ValueError(f"{member} is not a C-ordered uint8 (N, H, W, C) array")
    if shape[0] == 0:
        return np.zeros(shape, np.uint8), None
    return np.memmap(path, dtype=np.uint8, mode="c", shape=shape, offset=offset), RowFile(path, offset)


def _read_cache(path: Path) -> Dataset:
    """A dataset file written by :func:`_write_npz` (or ``np.savez``): its images memory-mapped, the rest read."""
    with np.load(path, allow_pickle=False) as z:
        y, classes, name, skipped = z["y"], tuple(str(c) for c in z["classes"]), str(z["name"]), int(z["skipped"])
    x, rows_file = _npz_memmap(path)
    return Dataset(x, y, classes, name, skipped, rows_file)


def _no_images(path: Path, split: str) -> DataError:
    layout = f"<root>/{split}/<class>/<image> inside the archive" if is_archive(path) else f"{path}/{split}/<class>/<image> (or {path}/<class>/<image>)"
    return DataError(f"no images in {path} for split '{split}': expected {layout}, images ending in {', '.join(IMAGE_SUFFIXES)}")


def _class_images(root: Path) -> Iterator[tuple[str, list[Path]]]:
    """The class folders under ``root`` in name order, each with its image files in name order (hidden ones skipped)."""
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield d.name, [f for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()]


def count_photos(source: str | os.PathLike[str], split: str = "train", limit_per_class: int | None = None) -> dict[str, int]:
    """Image files a class in ``split`` of a class-per-folder folder or archive, from the file names only (nothing decoded);
    each count capped at ``limit_per_class``. Empty for the built-in sets."""
    if str(source).lower().replace("_", "-") in {"cifar10", "cifar-10", "fashion-mnist"}:
        return {}
    path = Path(source)
    counts: dict[str, int] = {}
    if is_archive(path):
        for rel, _ in _iter_archive(path, read=False):
            member = _split_member(rel, split)
            if member is not None:
                counts[member[0]] = counts.get(member[0], 0) + 1
    elif path.is_dir():
        counts = {name: len(images) for name, images in _class_images(_folder_root(path, split))}
    if limit_per_class:
        counts = {c: min(n, limit_per_class) for c, n in counts.items()}
    return counts


def peek_image_size(source: str | os.PathLike[str], split: str = "train", n: int = 8) -> tuple[int, int] | None:
    """The smallest (height, width) among the first ``n`` images of a folder or archive; ``None`` for built-in sets.

    Reads headers of a handful of files only, so ``train-model`` can choose a recipe before loading the data.
    """
    if str(source).lower().replace("_", "-") in {"cifar10", "cifar-10", "fashion-mnist"}:
        return None
    path = Path(source)
    if not path.exists():
        raise DataError(f"dataset not found: {path}; give a folder <root>/<split>/<class>/*.jpg, an archive of one, or cifar10 / fashion-mnist")
    blobs: list[bytes] = []
    if is_archive(path):
        for rel, data in _iter_archive(path):
            if _split_member(rel, split) is not None:
                blobs.append(data)
                if len(blobs) >= n:
                    break
    elif path.is_dir():
        for _, images in _class_images(_folder_root(path, split)):
            blobs.extend(f.read_bytes() for f in images[: max(1, n // 2)])
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive")
    if not blobs:
        raise _no_images(path, split)
    sizes = [img.shape[:2] for img in map(decode_image, blobs[: 4 * n]) if img is not None]
    if not sizes:
        return None
    return min(int(s[0]) for s in sizes), min(int(s[1]) for s in sizes)


def check_same_classes(a: Dataset, b: Dataset) -> None:
    if a.classes != b.classes:
        only_a = sorted(set(a.classes) - set(b.classes))
        only_b = sorted(set(b.classes) - set(a.classes))
        raise DataError(f"the splits have different classes: only in the first {only_a}, only in the second {only_b}; every split needs the same class folders")


# --------------------------------------------------------------------------- built-in datasets


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise DataError(f"{root / stem} not found; install Fashion-MNIST with: sudo apt-get install dataset-fashion-mnist")


def load_fashion_mnist(split: str = "train", root: Path | None = None) -> Dataset:
    """Fashion-MNIST from IDX files (28x28 grey, returned as ``(N, 28, 28, 1)``)."""
    root = root or Path(os.environ.get("FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    prefix = {"train": "train", "test": "t10k", "val": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    x = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    y = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return Dataset(np.ascontiguousarray(x[..., None]), y, FASHION_MNIST_CLASSES, "fashion-mnist")


def _cifar_dirs() -> list[Path]:
    env = os.environ.get("CIFAR10_DIR")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs = [Path(env)] if env else []
    return [*dirs, keras_home / "datasets" / "cifar-10-batches-py", Path("cifar-10-batches-py")]


def _unpickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="bytes")  # noqa: S301 - the official CIFAR-10 format
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(d[b"labels"], dtype=np.int64)


def load_cifar10(split: str = "train", root: Path | None = None) -> Dataset:
    """CIFAR-10 from the ``cifar-10-batches-py`` pickles (Keras's download cache).

    When no copy is found, the Keras download is attempted (needs internet).
    """
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}.get(split)
    if names is None:
        raise DataError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}")
    candidates = [root] if root else _cifar_dirs()
    for d in candidates:
        if d is not None and all((d / n).exists() for n in names):
            parts = [_unpickle(d / n) for n in names]
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            return Dataset(x, y, CIFAR10_CLASSES, "cifar10")
    try:  # the download path, for users with internet
        import keras  # noqa: PLC0415 - heavy, only for this fallback

        (xt, yt), (xv, yv) = keras.datasets.cifar10.load_data()
    except Exception as exc:
        raise DataError(
            "CIFAR-10 not found in the Keras cache and the download failed "
            f"({type(exc).__name__}); set CIFAR10_DIR to a cifar-10-batches-py folder "
            "or pass a class-per-folder archive with --data"
        ) from exc
    x, y = (xt, yt) if split == "train" else (xv, yv)
    return Dataset(x.astype(np.uint8), y.reshape(-1).astype(np.int64), CIFAR10_CLASSES, "cifar10")


# --------------------------------------------------------------------------- splits


def stratified_split(
    y: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified (train_index, val_index): ``val_fraction`` of every class."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = max(1, round(len(idx) * val_fraction))
        if k >= len(idx):
            raise DataError(f"class {c} has only {len(idx)} image(s): too few to hold out a validation split")
        train.append(idx[:-k])
        val.append(idx[-k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_sample(y: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``per_class`` images of every class, deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        out.append(idx[rng.permutation(len(idx))[:per_class]])
    return np.sort(np.concatenate(out))


def train_val(
    source: str | os.PathLike[str],
    image_size: tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """Training data and its validation split: a ``val`` split when the tree has one, else carved."""
    train = load_dataset(source, "train", image_size)
    path = Path(source)
    if str(source).lower() not in BUILTIN and path.is_dir() and (path / "val").is_dir():
        val = load_dataset(source, "val", image_size)
        check_same_classes(train, val)
        return train, val
    ti, vi = stratified_split(train.y, val_fraction, seed)
    return train.subset(ti), train.subset(vi)



def train_val_rows(
    source: str | os.PathLike[str],
    image_size: tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Rows, Rows]:
    """:func:`train_val`'s two splits (the same images, in the same order) as :class:`Rows`: nothing copied, the images
    read in bounded batches from the memory-mapped dataset when they are used."""
    train = load_dataset(source, "train", image_size)
    path = Path(source)
    if str(source).lower() not in BUILTIN and path.is_dir() and (path / "val").is_dir():
        val = load_dataset(source, "val", image_size)
        check_same_classes(train, val)
        return train.rows(), val.rows()
    ti, vi = stratified_split(train.y, val_fraction, seed)
    return train.rows(ti), train.rows(vi)

__all__ = [
    "BATCH",
    "Dataset",
    "Rows",
    "check_same_classes",
    "decode_image",
    "fit_to_size",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_folder",
    "parse_size",
    "peek_image_size",
    "stratified_sample",
    "stratified_split",
    "train_val",
    "train_val_rows",
]
