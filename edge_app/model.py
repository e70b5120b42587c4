"""Loading a classification model (``.tflite`` + ``labels.txt`` + ``manifest.json``) and running it.

The helpers are stateless and return typed results, like pycoral's adapters: ``set_input``
quantises if needed, ``output_scores`` dequantises (the one place that does), ``top_k`` turns
scores into ``Classification`` tuples. ``Classifier`` bundles them for the frame loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge_app.errors import ModelError
from edge_app.runtime import get_runtime, native_stderr_as_debug

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "edge-recognition/1"
COLOR_ORDERS = ("RGB", "BGR", "GRAY")  # what ``preprocess`` feeds: 3-channel RGB or BGR, or 1-channel grey
DEFAULT_MODEL_NAME = "imagenet"  # EfficientNet-Lite0, the 1,000 ImageNet-1k classes (what the TF-Lite/MediaPipe Pi examples ship)


class Classification(NamedTuple):
    id: int
    label: str
    score: float


class Threshold(NamedTuple):
    """The score threshold in force (``[classification] threshold``) and where it came from (``source``, a phrase)."""

    value: float
    source: str

    def describe(self) -> str:
        """``0.1 (recommended by the model's manifest.json)``: what the startup log and ``--check-config`` say."""
        return f"{self.value:g} ({self.source})"


THRESHOLD_CAP = 0.2  # up to 500 classes: what systemd/config.example.toml set for every model before (reports/thresholds/)
THRESHOLD_PER_CLASSES = 100.0  # above: 100 / classes (0.1 for ImageNet's 1,000), a hundred times chance


def class_count_threshold(classes: int) -> float:
    """The threshold for a model whose manifest recommends none: ``min(0.2, 100 / classes)``.

    Measured with ``benchmarks/thresholds.py`` (``reports/thresholds/shipped-bundles.json``): with 10 classes 0.2 keeps
    99.3 % of real pet photos reported by the cifar10 bundle (and every CIFAR image); with 2 classes it is never reached
    (a top-1 of two is at least 0.5); with ImageNet's 1,000 it would hide 23 % of the pet photos, while 0.1 hides 4 %
    and the reported top-1 is still a cat or dog class as often (89 % against 88 % with no threshold).
    """
    return round(min(THRESHOLD_CAP, THRESHOLD_PER_CLASSES / max(1, classes)), 4)


def recommended_threshold(manifest: Manifest | None, classes: int) -> Threshold:
    """The threshold a model runs with when none is set: its manifest's ``threshold``, else ``class_count_threshold``."""
    if manifest is not None and manifest.threshold is not None:
        return Threshold(manifest.threshold, "recommended by the model's manifest.json")
    return Threshold(class_count_threshold(classes), f"the rule for {classes} classes, min(0.2, 100/classes)")


def threshold_in_force(setting: float | None, recommended: Threshold) -> Threshold:
    """The one rule: a threshold the user set (``--threshold``, ``[classification] threshold``) wins; else the model's."""
    return recommended if setting is None else Threshold(setting, "set by --threshold or [classification] threshold")


@dataclass(frozen=True)
class Manifest:
    """What the converter recorded next to the model (``manifest.json``)."""

    height: int
    width: int
    channels: int = 3
    color_order: str = "RGB"
    classes: tuple[str, ...] = ()
    dataset: str = ""
    edgetpu_model: str | None = None
    threshold: float | None = None  # the score threshold recommended for this model (used when the user sets none)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            inp = data["input"]
            manifest = cls(
                height=int(inp["height"]),
                width=int(inp["width"]),
                channels=int(inp.get("channels", 3)),
                color_order=str(inp.get("color_order", "RGB")).upper(),
                classes=tuple(data.get("classes", ())),
                dataset=str(data.get("dataset", "")),
                edgetpu_model=data.get("edgetpu_model"),
                threshold=_threshold(data.get("threshold")),
                extra=data,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"bad manifest {path}: {type(exc).__name__}: {exc}; regenerate it with convert-model "
                "or delete it to use the model's own input shape"
            ) from exc
        if manifest.color_order not in COLOR_ORDERS:
            raise ModelError(
                f"bad manifest {path}: input color_order {manifest.color_order!r} is not one of {', '.join(COLOR_ORDERS)}; "
                "set it to the order the model was trained on (convert-model writes RGB)"
            )
        if (manifest.color_order == "GRAY") != (manifest.channels == 1):
            raise ModelError(
                f"bad manifest {path}: color_order {manifest.color_order} does not fit {manifest.channels} input channel(s); "
                "use GRAY for 1 channel, RGB or BGR for 3"
            )
        if not 1.0 <= manifest.decode_cover <= 1e3:
            raw = manifest.extra["decode"]["cover"]
            raise ModelError(f"bad manifest {path}: decode.cover {raw!r} is not a number from 1 to 1000; remeasure it with check-decode --write")
        return manifest

    @property
    def decode_cover(self) -> float:
        """How many model inputs per side a reduced JPEG decode must still give (``check-decode``); 1.0 when not measured."""
        decode = self.extra.get("decode")
        try:
            return float(decode["cover"]) if isinstance(decode, dict) and "cover" in decode else 1.0
        except (TypeError, ValueError):
            return float("nan")


def _threshold(value: object) -> float | None:
    """A manifest's ``threshold``: absent (None) or a number from 0 to 1, else a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"threshold must be a number from 0 to 1, got {value!r}")
    return float(value)


def default_model_dir(name: str = DEFAULT_MODEL_NAME) -> Path:
    """A shipped bundle's folder (``imagenet``, the default, when no name is given): package data when installed, ``models/`` in a source checkout."""
    try:
        pkg = resources.files("edge_app_models") / name
        if pkg.is_dir():
            return Path(str(pkg))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "models" / name


def shipped_models() -> list[str]:
    """The names of the shipped bundles (``edge-app --model NAME``): the folders of ``edge_app_models`` (or ``models/``) with a model."""
    root: Path | None = None
    try:
        pkg = resources.files("edge_app_models")
        if pkg.is_dir():
            root = Path(str(pkg))
    except (ModuleNotFoundError, TypeError):
        pass
    root = root or Path(__file__).resolve().parent.parent / "models"
    try:
        return sorted(p.name for p in root.iterdir() if (p / "model.tflite").is_file())
    except OSError:
        return []


def _is_name(path: Path) -> bool:
    """``imagenet`` (a bundle's name), not ``./imagenet``, ``models/imagenet`` or ``model.tflite``."""
    text = str(path)
    return bool(text) and "/" not in text and "\\" not in text and not text.startswith(".") and path.suffix.lower() != ".tflite"


def load_labels(path: Path) -> list[str]:
    """One label per line; ``N label`` and ``N: label`` prefixes (Coral style) are accepted."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise ModelError(f"cannot read labels {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ModelError(f"labels file {path} is not UTF-8 text; expected one class name per line") from None
    labels = []
    for ln in lines:
        if not ln:
            continue
        head, _, rest = ln.replace(":", " ", 1).partition(" ")
        labels.append(rest.strip() if head.isdigit() and rest.strip() else ln)
    if not labels:
        raise ModelError(f"labels file {path} is empty; expected one class name per line")
    return labels


@dataclass(frozen=True)
class ModelFiles:
    model: Path
    labels: Path | None
    manifest: Path | None


def resolve_model(path: Path | None, labels: Path | None = None) -> ModelFiles:
    """Accept a model folder, a ``.tflite`` file or a shipped bundle's name (``imagenet``: a folder or file of that name
    in the working directory comes first); find ``labels.txt`` and ``manifest.json`` beside it."""
    path = path or default_model_dir()
    if not path.exists() and _is_name(path):
        names = shipped_models()
        if str(path) not in names:
            raise ModelError(f"no model {str(path)!r}: neither a file or folder nor a shipped bundle ({', '.join(names) or 'none installed'}); "
                             "pass --model with one of those names or a path to a .tflite file or a model folder")
        path = default_model_dir(str(path))
    if path.is_dir():
        folder, model = path, path / "model.tflite"
        if not model.exists():
            candidates = sorted(p for p in path.glob("*.tflite") if not p.name.endswith("_edgetpu.tflite"))
            if not candidates:
                raise ModelError(f"no .tflite model in {path}; expected {path}/model.tflite (make one with convert-model)")
            model = candidates[0]
    else:
        folder, model = path.parent, path
    if not model.exists():
        raise ModelError(f"model not found: {model}; pass --model PATH to a .tflite file or a model folder")
    labels = labels or (folder / "labels.txt" if (folder / "labels.txt").exists() else None)
    manifest = folder / "manifest.json" if (folder / "manifest.json").exists() else None
    return ModelFiles(model, labels, manifest)


# --------------------------------------------------------------------------- stateless helpers


def read_model(model: Path) -> bytes:
    """The bytes of a ``.tflite`` file, or a one-line ``ModelError`` when it is unreadable or not a TFLite model."""
    try:
        data = model.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {model}: {exc.strerror or exc}") from exc
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{model} is not a TFLite model (empty, truncated or another format); re-copy it or rebuild it with convert-model")
    return data


def make_interpreter(model: Path, num_threads: int | None = None, delegates: Sequence[Any] = (), data: bytes | None = None) -> Any:
    """A ready (tensors allocated) interpreter, or a one-line ``ModelError``; ``data``: the model's bytes when already read."""
    rt = get_runtime()
    if data is None:
        data = read_model(model)
    try:
        with native_stderr_as_debug(rt.name):  # "INFO: Created TensorFlow Lite XNNPACK delegate": -v shows it
            interp = rt.interpreter(model_content=data, num_threads=num_threads, experimental_delegates=list(delegates) or None)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {model}: {msg}; the file may be corrupt or need a newer runtime") from exc
    return interp


def input_details(interp: Any) -> dict[str, Any]:
    details: dict[str, Any] = interp.get_input_details()[0]
    return details


def input_size(interp: Any) -> tuple[int, int, int]:
    """(height, width, channels) of the model's input tensor."""
    shape = input_details(interp)["shape"]
    if len(shape) != 4:
        raise ModelError(f"expected an image model with input [1, H, W, C], got shape {list(shape)}")
    return int(shape[1]), int(shape[2]), int(shape[3])


def set_input(interp: Any, image: np.ndarray, details: dict[str, Any] | None = None) -> None:
    """Write a uint8 ``(H, W, C)`` image, quantising it when the input tensor is not uint8.

    ``details``: the interpreter's input details, when the caller keeps them (saves a lookup per frame).
    """
    d = details if details is not None else input_details(interp)
    dtype = d["dtype"]
    if dtype == np.uint8:
        tensor = image
    else:
        scale, zero = d.get("quantization", (0.0, 0))
        if dtype == np.float32 or not scale:
            tensor = image.astype(np.float32)
        else:
            info = np.iinfo(dtype)
            tensor = np.clip(np.round(image / scale + zero), info.min, info.max).astype(dtype)
    interp.set_tensor(d["index"], tensor[None].astype(dtype, copy=False))


def output_scores(interp: Any, details: dict[str, Any] | None = None) -> np.ndarray:
    """The output tensor as float scores, dequantised here and nowhere else (``details``: as for ``set_input``)."""
    d = details if details is not None else interp.get_output_details()[0]
    raw = interp.get_tensor(d["index"])[0]
    scale, zero = d.get("quantization", (0.0, 0))
    if raw.dtype.kind in "iu" and scale:  # (np.issubdtype costs more than the rest of this, on every frame)
        return (raw.astype(np.float32) - zero) * np.float32(scale)
    return raw.astype(np.float32)


SORT_ALL_BELOW = 256  # classes


def top_k(scores: np.ndarray, labels: Sequence[str], k: int = 3, threshold: float = 0.0) -> list[Classification]:
    """The ``k`` best classes with score >= ``threshold``, best first."""
    n = len(scores)
    k = max(1, min(k, n))
    if n <= SORT_ALL_BELOW:  # a full sort of a short vector beats argpartition's overhead
        idx = np.argsort(-scores, kind="stable")[:k]
    else:
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [
        Classification(i, labels[i] if i < len(labels) else str(i), score)
        for i, score in zip(idx.tolist(), scores[idx].tolist(), strict=True)
        if score >= threshold
    ]


# --------------------------------------------------------------------------- classifier


class Classifier:
    """A loaded model with its labels and input geometry; ``classify`` takes a BGR frame."""

    def __init__(
        self,
        files: ModelFiles,
        num_threads: int | None = None,
        delegates: Sequence[Any] = (),
        model_path: Path | None = None,
    ) -> None:
        from edge_app.preprocess import preprocess  # noqa: PLC0415 - OpenCV, imported when a model is loaded (edge-app --help needs none)

        self._preprocess = preprocess
        self.files = files
        self.manifest = Manifest.read(files.manifest) if files.manifest else None
        self.model_path = model_path or files.model
        self.threads = num_threads  # interpreter CPU threads (None: the runtime's default)
        data = read_model(self.model_path)
        self.sha256 = hashlib.sha256(data).hexdigest()  # of the bytes the interpreter runs (a file replaced later does not change it)
        self.interpreter = make_interpreter(self.model_path, num_threads, delegates, data)
        h, w, c = input_size(self.interpreter)
        if self.manifest and (self.manifest.height, self.manifest.width, self.manifest.channels) != (h, w, c):
            raise ModelError(
                f"manifest says input {self.manifest.height}x{self.manifest.width}x{self.manifest.channels} "
                f"but the model takes {h}x{w}x{c}; the manifest belongs to another model"
            )
        self.size = (h, w)
        self.channels = c
        self.color_order = self.manifest.color_order if self.manifest else "RGB"
        self.decode_cover = self.manifest.decode_cover if self.manifest else 1.0  # --decode reduced: measured by check-decode
        self._input = input_details(self.interpreter)
        self._output: dict[str, Any] = self.interpreter.get_output_details()[0]
        n_out = int(self._output["shape"][-1])
        if files.labels is not None:
            self.labels = load_labels(files.labels)
            problem = f"labels file {files.labels} has {len(self.labels)} classes"
            fix = "use the labels.txt written with this model"
        elif self.manifest and self.manifest.classes:
            self.labels = list(self.manifest.classes)
            problem = f"the manifest {files.manifest} lists {len(self.labels)} classes"
            fix = "regenerate the manifest with convert-model, or pass --labels FILE"
        else:
            self.labels = [str(i) for i in range(n_out)]
            problem = fix = ""
        if len(self.labels) != n_out:
            raise ModelError(f"{problem} but the model outputs {n_out}; {fix}")
        self.threshold = recommended_threshold(self.manifest, len(self.labels))  # in force unless the user sets one

    def prepare(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self._preprocess(frame_bgr, self.size, self.channels, self.color_order)

    def invoke(self, image: np.ndarray) -> np.ndarray:
        set_input(self.interpreter, image, self._input)
        self.interpreter.invoke()
        return output_scores(self.interpreter, self._output)

    def scores(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.invoke(self.prepare(frame_bgr))

    def classify(self, frame_bgr: np.ndarray, k: int = 3, threshold: float = 0.0) -> list[Classification]:
        return top_k(self.scores(frame_bgr), self.labels, k, threshold)

    def time_invoke(self, runs: int = 50) -> list[float]:
        """Seconds per ``invoke()`` on a fixed input, after one warm-up."""
        image = np.zeros((*self.size, self.channels), np.uint8)
        set_input(self.interpreter, image)
        self.interpreter.invoke()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - t)
        return times
