"""One loader API for every dataset the workstation tools accept.

``load_dataset(source, split)`` returns a :class:`Dataset` (uint8 images ``(N, H, W, C)``,
integer labels and the class names) for:

* ``cifar10``: the Keras download cache or a ``cifar-10-batches-py`` folder of pickles;
* ``fashion-mnist``: the IDX files installed by Debian's ``dataset-fashion-mnist``;
* a class-per-folder tree ``<root>/<split>/<class>/*.jpg|png`` given as a folder, a
  ``.tar.gz``/``.tgz``/``.tar`` or a ``.zip``. Decoded arrays are cached, so the second load
  of the same archive is fast.

``stratified_split`` carves a deterministic validation split out of training data.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import pickle
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 ``(N, H, W, C)`` RGB (or ``C == 1`` grey), labels as int64 ``(N,)``."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str
    skipped: int = 0

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

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}


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


def _iter_archive(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield PurePosixPath(info.filename), zf.read(info)
        else:
            with tarfile.open(path) as tf:
                for member in tf:
                    if member.isfile():
                        fh = tf.extractfile(member)
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

    Last use is a file's modification time (a cache hit touches it) or its access time, whichever is later. ``keep``
    (the entry just written) is never removed; half-written ``.tmp`` files are left alone for an hour.
    """
    root = root or default_cache_dir()
    limit = cache_limit() if limit is None else limit
    kept = {os.path.abspath(k) for k in keep}
    entries: list[tuple[float, int, str]] = []
    now = time.time()
    for top, _dirs, files in os.walk(root):
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
    """Read a class-per-folder tree from a folder or an archive of one."""
    if not path.exists():
        raise DataError(f"dataset not found: {path}; give a folder <root>/<split>/<class>/*.jpg, an archive of one, or cifar10 / fashion-mnist")
    cache_file: Path | None = None
    if use_cache:
        cache_limit()  # a bad $EDGE_RECOGNITION_CACHE_LIMIT is one line now, not after the images are decoded
        cache_file = (cache_dir or default_cache_dir()) / f"{path.name}-{split}-{_fingerprint(path, split, image_size)}.npz"
        if cache_file.exists():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    log.info("loaded %s from cache %s", path, cache_file)
                    ds = Dataset(z["x"], z["y"], tuple(str(c) for c in z["classes"]), str(z["name"]), int(z["skipped"]))
                touch_cache_entry(cache_file)
                return ds
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)

    by_class: dict[str, list[np.ndarray]] = {}
    empty_classes: set[str] = set()
    skipped = 0
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

    for cls, name, src in items:
        empty_classes.discard(cls)
        data = src.read_bytes() if isinstance(src, Path) else src
        img = decode_image(data)
        if img is None:
            skipped += 1
            log.warning("skipping unreadable image %s/%s/%s", split, cls, name)
            continue
        if image_size is not None:
            img = fit_to_size(img, image_size)
        by_class.setdefault(cls, []).append(img)

    if not by_class and not skipped:
        raise _no_images(path, split)
    if empty_classes:
        raise DataError(f"class folder(s) with no readable images in {path} ({split}): {', '.join(sorted(empty_classes))}; add images or remove the folder")
    if not by_class:
        raise DataError(f"no images found for split '{split}' in {path}; expected <root>/{split}/<class>/<image>.jpg")
    classes = tuple(sorted(by_class))
    if len(classes) < 2:
        raise DataError(f"{path} ({split}) has only one class ({classes[0]}); a classifier needs at least two")
    shapes = {img.shape for imgs in by_class.values() for img in imgs}
    if len(shapes) > 1:
        raise MixedSizesError(f"images in {path} have {len(shapes)} different sizes; pass --image-size (e.g. 96) to resize them")
    x = np.stack([img for c in classes for img in by_class[c]])
    y = np.concatenate([np.full(len(by_class[c]), i, dtype=np.int64) for i, c in enumerate(classes)])
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s (%s)", skipped, path, split)
    ds = Dataset(x, y, classes, path.name.split(".")[0], skipped)
    if cache_file is not None:
        _write_cache(cache_file, ds)
    return ds


def _no_images(path: Path, split: str) -> DataError:
    layout = f"<root>/{split}/<class>/<image> inside the archive" if is_archive(path) else f"{path}/{split}/<class>/<image> (or {path}/<class>/<image>)"
    return DataError(f"no images in {path} for split '{split}': expected {layout}, images ending in {', '.join(IMAGE_SUFFIXES)}")


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
        root = _folder_root(path, split)
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = [f for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()]
            blobs.extend(f.read_bytes() for f in images[: max(1, n // 2)])
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive")
    if not blobs:
        raise _no_images(path, split)
    sizes = [img.shape[:2] for img in map(decode_image, blobs[: 4 * n]) if img is not None]
    if not sizes:
        return None
    return min(int(s[0]) for s in sizes), min(int(s[1]) for s in sizes)


def _write_cache(cache_file: Path, ds: Dataset) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, x=ds.x, y=ds.y, classes=np.array(ds.classes), name=np.array(ds.name), skipped=np.array(ds.skipped))
        tmp.replace(cache_file)
    except OSError as exc:  # a cache is an optimisation: never fail the load for it
        log.warning("could not write dataset cache %s: %s", cache_file, exc)
        return
    prune_cache(cache_file.parent, keep=(cache_file,))


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


__all__ = [
    "Dataset",
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
]
