"""``edge-app doctor DIR``: what is wrong with a class-per-folder photo set, before training and on the review page.

The dataset is the layout ``train-model`` reads and ``edge-app --collect`` / the review page write:
``DIR/train/<class>/*.jpg`` (with ``DIR/val/<class>/`` as a validation split when there is one), or ``DIR/<class>/*.jpg``.
``examine`` returns one typed ``Finding`` per problem, each naming its files (``message`` quotes the first few and
says how many more; ``files`` lists them all):

* ``imbalance``: the largest class has more than 3x the photos of the smallest;
* ``small-images``: photos smaller than half the model input on a side (they are scaled up and lose detail);
* ``duplicates`` / ``near-duplicates``: the same photo twice (same bytes), or a resized, re-encoded or brightened copy
  (a 64-bit difference hash and a 64-bit DCT hash of the grey image both within ``NEAR_BITS`` bits); within a class
  it only weighs that photo more, across classes (``...-across-classes``, serious) the model is taught both labels
  for one picture, across the train/validation split (``...-across-split``, serious) the validation score is inflated;
* ``mislabels``: with a feature function (an image to a vector: a model's output scores or a backbone's features),
  photos whose leave-one-out k-nearest-neighbour prediction names another class with at least ``confidence`` of
  the vote: a cross-validated prediction that disagrees confidently with the folder;
* ``no-background``: with zones, no ``none``/``background`` class, so an empty zone is always named one of the others;
* ``unreadable`` and ``empty-class``: files no decoder reads (``train-model`` skips them) and class folders without photos.

Nothing here changes the data: it reads and reports. NumPy and OpenCV only (it runs on the device; no TensorFlow).
Measured on the 4,000 real photos of ``cats-vs-dogs.tar.gz`` (2026-12-07): copies resized to 2/3 and re-encoded at
JPEG quality 60 are within 3 bits on both hashes, brightened ones within 6; the two closest distinct photos are 11
and 12 bits apart, and the set itself holds two genuine near-duplicate pairs (0-2 bits), which the doctor names.
Mislabels there (k = 20, 90 % of the vote): with the shipped cats-vs-dogs model's scores as features 13 of the 4,000
photos are named, with the ImageNet bundle's 1,000 scores 18; both lists hold test/cat/cat.4085.jpg (a beagle) and
test/dog/dog.4334.jpg (a cat), the rest are mostly hard photos (a dog carrying a kitten, kittens in a cage), so a
finding is a photo to look at, not a verdict.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge_app.errors import EdgeAppError, ExitCode

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # what train-model reads (converter.data.datasets.IMAGE_SUFFIXES)
SPLITS = ("train", "val")
IMBALANCE = 3.0  # largest class / smallest class above which the set is reported as imbalanced
NEAR_BITS = 8  # both perceptual hashes (of 64 bits) at most this far apart: a near duplicate
CONFIDENCE = 0.9  # share of the neighbours' vote another class needs for a photo to be a suspected mislabel
NEIGHBOURS = 20  # k of the leave-one-out k-nearest-neighbour vote (at most the smallest class's size)
BACKGROUND_NAMES = ("none", "background", "empty", "nothing", "bg")  # a zone's "nothing there" class
SHOWN = 5  # names quoted in a message; ``files`` holds them all
FINDINGS_EXIT = int(ExitCode.FINDINGS)  # edge-app doctor --strict when there are findings
SERIOUS, WARNING = "serious", "warning"
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)

FeatureFunction = Callable[[np.ndarray], np.ndarray]  # a BGR uint8 image (H, W, 3) to a 1-D feature vector


class DoctorError(EdgeAppError):
    """A dataset folder the doctor cannot read (missing, not a folder of class folders)."""

    exit_code = ExitCode.SOURCE


class Scorer(Protocol):
    """What ``model_features`` needs: ``edge_app.model.Classifier`` (``scores`` of a BGR frame)."""

    def scores(self, frame_bgr: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` (see the module doc), a one-line ``message`` naming the first files, all ``files``
    (paths relative to the dataset folder), ``severity`` (``serious`` or ``warning``) and, for duplicates, the
    ``groups`` of files that are copies of each other."""

    kind: str
    message: str
    files: tuple[str, ...] = ()
    severity: str = WARNING
    groups: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"], data["groups"] = list(self.files), [list(g) for g in self.groups]
        return data


@dataclass(frozen=True)
class Photo:
    path: Path
    name: str  # relative to the dataset folder, with '/': train/cat/a.jpg
    split: str
    label: str


@dataclass(frozen=True)
class Signature:
    """What the checks need of one photo: its bytes' SHA-256, (height, width) and the two perceptual hashes."""

    sha256: str
    shape: tuple[int, int]
    dhash: np.ndarray  # 8 bytes
    phash: np.ndarray  # 8 bytes


@dataclass
class SignatureCache:
    """Signatures and features by (path, size, mtime): the review page asks again and again about a set that grows."""

    signatures: dict[tuple[str, int, int], Signature | None] = field(default_factory=dict)
    features: dict[tuple[str, int, int], np.ndarray | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    feature_function: object = None  # whose features ``features`` holds: another function (a new model) starts afresh

    def use_features(self, function: object) -> None:
        with self.lock:
            if function is not None and function is not self.feature_function:
                self.features.clear()
                self.feature_function = function

    def prune(self, keys: set[tuple[str, int, int]]) -> None:
        with self.lock:
            for table in (self.signatures, self.features):
                for key in [k for k in table if k not in keys]:
                    del table[key]


# ---------------------------------------------------------------------- the dataset's photos


def dataset_root(folder: Path) -> dict[str, Path]:
    """The split folders of a dataset: ``{"train": DIR/train, "val": DIR/val}`` (val when present), or
    ``{"train": DIR}`` for a folder of class folders; ``DoctorError`` for anything else."""
    if not folder.is_dir():
        raise DoctorError(f"dataset folder not found: {folder}; give a folder DIR/train/<class>/*.jpg or DIR/<class>/*.jpg")
    if (folder / "train").is_dir():
        return {s: folder / s for s in SPLITS if (folder / s).is_dir()}
    if any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        return {"train": folder}
    raise DoctorError(f"{folder} has no train/ folder and no class folders; expected {folder}/train/<class>/<image>.jpg")


def list_photos(folder: Path) -> tuple[list[Photo], dict[str, list[str]]]:
    """Every image of every class folder of every split (hidden files and folders skipped, links followed), sorted;
    and the classes of each split (empty class folders included)."""
    photos: list[Photo] = []
    classes: dict[str, list[str]] = {}
    for split, root in dataset_root(folder).items():
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        classes[split] = [d.name for d in dirs]
        for d in dirs:
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file():
                    photos.append(Photo(f, f.relative_to(folder).as_posix(), split, d.name))
    return photos, classes


def _key(photo: Photo) -> tuple[str, int, int]:
    st = photo.path.stat()
    return str(photo.path), st.st_size, st.st_mtime_ns


# ---------------------------------------------------------------------- hashes


def dhash(gray: np.ndarray) -> np.ndarray:
    """64-bit difference hash (8 bytes): is each pixel of a 9x8 thumbnail brighter than its left neighbour."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits((small[:, 1:] > small[:, :-1]).ravel())


def phash(gray: np.ndarray) -> np.ndarray:
    """64-bit DCT hash (8 bytes): the 63 lowest non-DC DCT terms of a 32x32 thumbnail against their median (+1 zero bit)."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    terms = cv2.dct(small)[:8, :8].ravel()[1:]
    return np.packbits(np.append(terms > np.median(terms), False))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between every row of ``a`` (N, 8) and every row of ``b`` (M, 8): (N, M) uint8."""
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(-1, dtype=np.uint8)


def signature(data: bytes, image: np.ndarray | None) -> Signature | None:
    if image is None:
        return None
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return Signature(hashlib.sha256(data).hexdigest(), (int(image.shape[0]), int(image.shape[1])), dhash(gray), phash(gray))


def _decode(data: bytes) -> np.ndarray | None:
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


# ---------------------------------------------------------------------- messages


def _names(files: Sequence[str], shown: int = SHOWN) -> str:
    text = ", ".join(files[:shown])
    return text + (f" and {len(files) - shown} more" if len(files) > shown else "")


def _group_text(groups: Sequence[Sequence[str]], shown: int = SHOWN) -> str:
    text = "; ".join(" = ".join(g) for g in groups[:shown])
    return text + (f"; and {len(groups) - shown} more group(s)" if len(groups) > shown else "")


# ---------------------------------------------------------------------- the checks


def check_balance(counts: dict[str, int], split: str = "train", ratio: float = IMBALANCE) -> list[Finding]:
    """``imbalance`` when the largest class has more than ``ratio`` times the photos of the smallest (empty ones aside)."""
    have = {c: n for c, n in counts.items() if n}
    if len(have) < 2:
        return []
    small, large = min(have, key=lambda c: (have[c], c)), max(have, key=lambda c: (have[c], c))
    if have[large] <= ratio * have[small]:
        return []
    few = sorted(c for c, n in have.items() if n * ratio < have[large])
    return [Finding("imbalance",
                    f"class imbalance {have[large] / have[small]:.1f}x (over {ratio:g}x): {large} has {have[large]} photos, "
                    + ", ".join(f"{c} {have[c]}" for c in few) + f"; add photos to {_names(few)} or leave some of {large} out",
                    tuple(f"{split}/{c}" for c in [large, *few]))]


def check_small(photos: Sequence[Photo], sigs: Sequence[Signature | None], input_size: tuple[int, int]) -> list[Finding]:
    """``small-images``: photos below half the model input (height, width) on either side."""
    h, w = input_size
    small = [(p.name, s.shape) for p, s in zip(photos, sigs, strict=True) if s is not None and (2 * s.shape[0] < h or 2 * s.shape[1] < w)]
    if not small:
        return []
    quoted = [f"{name} ({shape[1]}x{shape[0]})" for name, shape in small]
    return [Finding("small-images", f"{len(small)} photo(s) smaller than half the model input ({w // 2}x{h // 2} of {w}x{h}; they are "
                    f"scaled up and lose detail): {_names(quoted)}", tuple(name for name, _ in small))]


def _group_pairs(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (union-find) of the index pairs; singletons left out."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _duplicate_findings(kind: str, what: str, photos: Sequence[Photo], groups: list[list[int]]) -> list[Finding]:
    """Split groups of copies into within-class, across-class and across-split findings (the strongest applies)."""
    by_scope: dict[str, list[tuple[str, ...]]] = {"across-split": [], "across-classes": [], "": []}
    for g in groups:
        names = tuple(photos[i].name for i in g)
        if len({photos[i].split for i in g}) > 1:
            by_scope["across-split"].append(names)
        elif len({photos[i].label for i in g}) > 1:
            by_scope["across-classes"].append(names)
        else:
            by_scope[""].append(names)
    texts = {
        "across-split": (f"{what} in both the training and the validation split (the validation score counts photos the model trained on)", SERIOUS),
        "across-classes": (f"{what} in two or more classes (the model is taught different labels for one picture)", SERIOUS),
        "": (f"{what} within a class (each weighs more than the other photos)", WARNING),
    }
    findings = []
    for scope, found in by_scope.items():
        if found:
            text, severity = texts[scope]
            files = tuple(name for g in found for name in g)
            message = f"{len(found)} group(s) of {text}: {_group_text(found)}"
            findings.append(Finding(f"{kind}-{scope}" if scope else kind, message, files, severity, tuple(found)))
    return findings


def check_duplicates(photos: Sequence[Photo], sigs: Sequence[Signature | None], near_bits: int = NEAR_BITS) -> list[Finding]:
    """Exact copies (same bytes) and near copies (both perceptual hashes within ``near_bits``), photos that are exact
    copies of each other counted once among the near ones."""
    idx = [i for i, s in enumerate(sigs) if s is not None]
    by_hash: dict[str, list[int]] = {}
    for i in idx:
        by_hash.setdefault(sigs[i].sha256, []).append(i)  # type: ignore[union-attr]  # idx holds the decoded ones
    exact = [g for g in by_hash.values() if len(g) > 1]
    findings = _duplicate_findings("duplicates", "exact copies", photos, exact)
    if near_bits < 0:
        return findings
    firsts = [g[0] for g in by_hash.values()]  # one photo per distinct content
    if len(firsts) < 2:
        return findings
    d = np.stack([sigs[i].dhash for i in firsts])  # type: ignore[union-attr]
    p = np.stack([sigs[i].phash for i in firsts])  # type: ignore[union-attr]
    pairs = []
    chunk = max(1, 2_000_000 // (8 * len(firsts)))  # rows at a time: a few MB of XORed bytes
    for start in range(0, len(firsts), chunk):
        close = (hamming(d[start:start + chunk], d) <= near_bits) & (hamming(p[start:start + chunk], p) <= near_bits)
        for a, b in zip(*np.nonzero(close), strict=True):
            if start + a < b:
                pairs.append((firsts[start + a], firsts[b]))
    near = []
    for g in _group_pairs(len(photos), pairs):
        members = [j for i in g for j in by_hash[sigs[i].sha256]]  # type: ignore[union-attr]  # each content's copies too
        near.append(sorted(members))
    return findings + _duplicate_findings("near-duplicates", "near copies (resized, re-encoded or retouched)", photos, near)


def loo_knn(features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Leave-one-out k-nearest-neighbour votes by cosine similarity: (N, classes), each row the share of the photo's
    ``k`` most similar other photos in each class; ``labels`` are 0..C-1. The features are power-normalised first
    (signed square root: for probabilities, cosine is then the Bhattacharyya coefficient, and the second and third
    classes count, not only the first)."""
    n, classes = len(features), int(labels.max()) + 1
    f = features.astype(np.float32).reshape(n, -1)
    f = np.sign(f) * np.sqrt(np.abs(f))
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    k = max(1, min(k, n - 1))
    votes = np.zeros((n, classes), np.float32)
    for start in range(0, n, 512):
        sim = f[start:start + 512] @ f.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf  # leave the photo itself out
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        np.add.at(votes, (np.repeat(start + rows, k), labels[nearest].ravel()), 1.0)
    return votes / k


def check_mislabels(photos: Sequence[Photo], feats: Sequence[np.ndarray | None], confidence: float = CONFIDENCE, k: int = NEIGHBOURS) -> list[Finding]:
    """``mislabels``: photos whose leave-one-out k-NN vote gives another class at least ``confidence``; k is at most
    the smallest class's size, so a small class is not outvoted by a large one's sheer number."""
    idx = [i for i, f in enumerate(feats) if f is not None]
    names = sorted({photos[i].label for i in idx})
    counts = {c: sum(1 for i in idx if photos[i].label == c) for c in names}
    if len(names) < 2 or min(counts.values()) < 2:
        return []
    labels = np.array([names.index(photos[i].label) for i in idx])
    k = max(1, min(k, *counts.values(), len(idx) - 1))
    votes = loo_knn(np.stack([np.asarray(feats[i], np.float32).ravel() for i in idx]), labels, k)
    pred = votes.argmax(1)
    suspects = [(idx[j], names[pred[j]], float(votes[j, pred[j]])) for j in range(len(idx)) if pred[j] != labels[j] and votes[j, pred[j]] >= confidence]
    suspects.sort(key=lambda s: (-s[2], photos[s[0]].name))
    if not suspects:
        return []
    quoted = [f"{photos[i].name} looks like {cls} ({share:.0%} of its {k} nearest)" for i, cls, share in suspects]
    return [Finding("mislabels", f"{len(suspects)} suspected mislabel(s) (the photos most like each are of another class): {_names(quoted)}",
                    tuple(photos[i].name for i, _, _ in suspects))]


def check_background(classes: Sequence[str], split: str = "train") -> list[Finding]:
    """``no-background``: zones need a class for "nothing there", else an empty zone is always one of the others."""
    if any(c.lower() in BACKGROUND_NAMES for c in classes):
        return []
    return [Finding("no-background", f"zones without a 'none' class: an empty zone will always be named one of {_names(list(classes))}; add "
                    f"{split}/none/ with photos of the zones with nothing in them (edge-app --collect saves them)",
                    tuple(f"{split}/{c}" for c in classes))]


# ---------------------------------------------------------------------- the whole examination


def model_features(scorer: Scorer) -> FeatureFunction:
    """A feature function from a loaded ``edge_app.model.Classifier``: its output scores for the photo (one call at a
    time: a TFLite interpreter is not thread-safe, and the review page may be asked twice at once)."""
    lock = threading.Lock()

    def features(image: np.ndarray) -> np.ndarray:
        with lock:
            return np.asarray(scorer.scores(image), np.float32)

    return features


def _open_classifier(files: Any) -> Scorer:
    from edge_app.model import Classifier  # noqa: PLC0415 - the runtime, only when the review page asks for mislabels

    return Classifier(files)


class RunningModel:
    """The review routes' view of the model the app runs (``edge_app.pipeline.modelslot.ModelSlot``: its ``classifier``,
    ``files`` and ``model_id``): ``input_size()`` is the running model's input, ``features()`` a feature function on a
    second classifier opened on the same bundle (the frame loop owns the first; TFLite interpreters are not thread-safe),
    the same function object until the model changes, so the doctor's feature cache lasts as long as the model."""

    def __init__(self, slot: Any, opener: Callable[[Any], Scorer] = _open_classifier) -> None:
        self.slot = slot
        self.opener = opener
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self._features: FeatureFunction | None = None

    def input_size(self) -> tuple[int, int] | None:
        classifier = self.slot.classifier
        return (int(classifier.size[0]), int(classifier.size[1])) if classifier is not None else None

    def features(self) -> FeatureFunction | None:
        model_id, files = self.slot.model_id, self.slot.files
        if model_id is None or files is None:
            return None
        with self._lock:
            if model_id != self._model_id:
                try:
                    scorer = self.opener(files)
                except (EdgeAppError, OSError, ValueError, RuntimeError) as exc:  # the mislabel check is skipped, the rest runs
                    log.warning("doctor: cannot open a second copy of %s for the mislabel check: %s", model_id, exc)
                    return None
                self._model_id, self._features = model_id, model_features(scorer)
            return self._features


def _size(input_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    return (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))


def examine(
    folder: Path,
    *,
    input_size: int | tuple[int, int] | None = None,
    zones: bool = False,
    features: FeatureFunction | None = None,
    cache: SignatureCache | None = None,
    imbalance: float = IMBALANCE,
    near_bits: int = NEAR_BITS,
    confidence: float = CONFIDENCE,
) -> list[Finding]:
    """Every finding for the dataset ``folder`` (see the module doc), serious ones first; an empty list when clean.

    ``input_size``: the model input (N or (height, width)) for ``small-images`` (skipped without it); ``zones``: check
    for a background class; ``features``: a feature function for ``mislabels`` (skipped without it); ``cache``: keep
    signatures and features between calls (the review page; features are kept while the same function object is
    passed, so pass one function per model)."""
    cache = cache if cache is not None else SignatureCache()
    cache.use_features(features)
    photos, classes = list_photos(Path(folder))
    sigs: list[Signature | None] = []
    feats: list[np.ndarray | None] = []
    keys = set()
    for photo in photos:
        key = _key(photo)
        keys.add(key)
        with cache.lock:
            sig_known, feat_known = key in cache.signatures, key in cache.features
            sig, feat = cache.signatures.get(key), cache.features.get(key)
        if not sig_known or (features is not None and not feat_known):
            data = photo.path.read_bytes()
            image = _decode(data)
            sig = signature(data, image)
            if features is not None and image is not None:
                feat = np.asarray(features(image), np.float32).ravel()
            with cache.lock:
                cache.signatures[key] = sig
                if features is not None:
                    cache.features[key] = feat
        sigs.append(sig)
        feats.append(feat)
    cache.prune(keys)

    findings: list[Finding] = []
    unreadable = [p.name for p, s in zip(photos, sigs, strict=True) if s is None]
    if unreadable:
        findings.append(Finding("unreadable", f"{len(unreadable)} file(s) no image decoder reads (train-model skips them): {_names(unreadable)}",
                                tuple(unreadable)))
    for split, names in classes.items():
        counts = {c: sum(1 for p in photos if p.split == split and p.label == c) for c in names}
        empty = [f"{split}/{c}" for c, n in counts.items() if not n]
        if empty:
            findings.append(Finding("empty-class", f"{len(empty)} class folder(s) without photos (train-model refuses them): {_names(empty)}", tuple(empty)))
        if split == "train":
            findings += check_balance(counts, split, imbalance)
            if zones:
                findings += check_background(names, split)
    size = _size(input_size)
    if size is not None:
        findings += check_small(photos, sigs, size)
    findings += check_duplicates(photos, sigs, near_bits)
    if features is not None:
        findings += check_mislabels(photos, feats, confidence)
    findings.sort(key=lambda f: f.severity != SERIOUS)
    log.debug("doctor: %d photo(s) in %s, %d finding(s)", len(photos), folder, len(findings))
    return findings


# ---------------------------------------------------------------------- edge-app doctor DIR

DESCRIPTION = (
    "Check a class-per-folder photo set (DIR/train/<class>/*.jpg, DIR/val/<class>/ when there is one, or DIR/<class>/*.jpg: "
    "what train-model reads and the review page writes) before training: class imbalance (> 3x), photos smaller than half the "
    "model input, exact and near duplicates within and across classes and across the train/val split, suspected mislabels "
    "(with --model: a leave-one-out nearest-neighbour vote on the model's scores), and with --zones a missing 'none' class. "
    "One line a finding; the data is never changed. Findings are warnings: exit 0, or with --strict exit "
    f"{FINDINGS_EXIT} when there are any."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("folder", type=Path, help="the dataset folder (or the --collect folder: its train/ is checked)")
    parser.add_argument("--input-size", type=int, metavar="N", help="the model input side in pixels, for the small-photo check "
                        "(default: the --model's input; without either the check is skipped)")
    parser.add_argument("--model", type=Path, metavar="PATH|NAME", help="a model folder, .tflite file or shipped bundle name: its scores "
                        "are the features of the mislabel check (best a model that knows these classes; imagenet for any photos)")
    parser.add_argument("--zones", action="store_true", help="the model will classify zones: a 'none' (background) class is needed")
    parser.add_argument("--strict", action="store_true", help=f"exit {FINDINGS_EXIT} when there is any finding (default: findings are warnings, exit 0)")
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list instead of one line each")


def run(args: Any) -> int:
    import json  # noqa: PLC0415

    features = None
    input_size = args.input_size
    if args.model is not None:
        from edge_app.model import Classifier, resolve_model  # noqa: PLC0415 - a runtime only when a model is asked for

        classifier = Classifier(resolve_model(args.model))
        features = model_features(classifier)
        input_size = input_size or classifier.size
    if input_size is not None and not isinstance(input_size, tuple) and input_size < 1:
        raise DoctorError(f"--input-size must be a positive number of pixels, got {input_size}")
    findings = examine(args.folder, input_size=input_size, zones=args.zones, features=features)
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=1))
    else:
        for f in findings:
            print(f"{f.severity}: {f.kind}: {f.message}")
        if not findings:
            print(f"{args.folder}: no findings")
    return int(ExitCode.FINDINGS) if findings and args.strict else int(ExitCode.OK)
