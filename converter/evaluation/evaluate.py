"""``evaluate-model``: accuracy, per-class precision/recall, confusion matrix and latency of a model.

``evaluate-model models/cifar10 --data cifar10-train.tar.gz`` evaluates the int8 model on the
validation carve (the same seed and fraction as ``train-model``); ``.tflite`` models run through
the device app's own LiteRT code (``edge_app.model``), ``.keras`` models through Keras.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import Dataset, load_dataset, train_val
from converter.errors import DataError, ModelError
from converter.evaluation.cross_validation import CI_NAME, NOT_SCORED, SMALL_CLASS, interval, score_text, training_score
from converter.evaluation.failures import FailureAnalysis, analyse
from edge_app.errors import ModelError as DeviceModelError
from edge_app.model import Classifier, load_labels, resolve_model

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    model: str
    dataset: str
    split: str
    classes: list[str]
    accuracy: float
    analysis: FailureAnalysis  # confusion matrix (rows: true class, columns: predicted class) and mistakes
    precision: list[float]
    recall: list[float]
    latency_ms: dict[str, float]
    predictions: np.ndarray
    scores: np.ndarray
    tta_accuracy: float | None = None  # with --tta: airbench's 6-view test-time augmentation (a report, never the device)
    training_score: dict[str, Any] | None = None  # how train-model scored the model (:func:`recorded_score`)
    training_score_from: str | None = None  # the file it was read from

    @property
    def confusion(self) -> np.ndarray:
        return self.analysis.confusion

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def ci95(self) -> list[float]:
        """The 95 % Wilson interval of :attr:`accuracy` over the evaluated images."""
        return interval(self.accuracy, self.images)

    @property
    def smallest_class(self) -> int:
        support = self.confusion.sum(1)
        return int(support[support > 0].min()) if support.any() else 0

    @property
    def small_set(self) -> bool:
        """Fewer than ``SMALL_CLASS`` images in some class: the accuracy can move by several points by chance."""
        return self.smallest_class < SMALL_CLASS

    @property
    def margin_points(self) -> float:
        """Half the width of :attr:`ci95`, in percentage points."""
        lo, hi = self.ci95
        return round((hi - lo) * 50, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "images": int(self.confusion.sum()),
            "accuracy": round(self.accuracy, 4),
            "accuracy_ci95": self.ci95,
            "ci": CI_NAME,
            "smallest_class_images": self.smallest_class,
            "small_set": self.small_set,  # fewer than SMALL_CLASS images in some class
            "margin_points": self.margin_points,  # half the 95 % interval, percentage points
            "training_score": self.training_score,  # how train-model scored the model: cross-validation or its carve
            "training_score_from": self.training_score_from,
            "per_class": {
                c: {"precision": round(p, 4), "recall": round(r, 4), "support": int(self.confusion[i].sum())}
                for i, (c, p, r) in enumerate(zip(self.classes, self.precision, self.recall, strict=True))
            },
            "confusion_matrix": self.confusion.tolist(),
            "latency_ms": self.latency_ms,
            **({"tta_accuracy": round(self.tta_accuracy, 4), "tta_views": 6} if self.tta_accuracy is not None else {}),
            "machine": f"{platform.machine()}, {platform.system()}",
            "date": time.strftime("%Y-%m-%d"),
        }


def keras_predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Scores ``(N, classes)`` of a Keras model on uint8 images (batched)."""
    return np.asarray(model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0))


class TFLiteRunner:
    """A ``.tflite`` model (or bundle folder) through the device app's ``Classifier``."""

    def __init__(self, path: Path, threads: int | None = 1) -> None:
        try:
            files = resolve_model(path)
            self.classifier = Classifier(files, num_threads=threads)
        except DeviceModelError as exc:
            raise ModelError(str(exc)) from exc
        self.labels = self.classifier.labels if files.labels else None
        self.name = str(files.model)
        self.input_shape = (*self.classifier.size, self.classifier.channels)

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        return self.classifier.invoke(image)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One image at a time, as on the device."""
        return np.stack([self.classifier.invoke(img) for img in x])


def tflite_predict(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Scores ``(N, classes)`` of a .tflite model on uint8 images, through the device app's code."""
    return TFLiteRunner(path, threads).predict(x)


class KerasRunner:
    def __init__(self, path: Path) -> None:
        if not path.is_file():  # before TensorFlow is imported
            raise ModelError(f"model not found: {path}; pass a .keras model, a .tflite model or a bundle folder")
        import keras  # noqa: PLC0415

        try:
            self.model = keras.models.load_model(path, compile=False)
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        labels = path.parent / "labels.txt"
        self.labels = load_labels(labels) if labels.exists() else None
        self.name = str(path)
        self.input_shape = tuple(int(d) for d in self.model.input_shape[1:])

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(image[None].astype(np.float32), training=False))[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return keras_predict(self.model, x)


def open_runner(path: Path, threads: int | None = 1) -> TFLiteRunner | KerasRunner:
    if path.suffix == ".keras":
        return KerasRunner(path)
    if path.suffix == ".tflite" or path.is_dir():
        return TFLiteRunner(path, threads)
    raise ModelError(f"{path}: expected a .keras model, a .tflite model or a model folder")


def evaluate(runner: TFLiteRunner | KerasRunner, data: Dataset, split: str = "validation", latency_runs: int = 200) -> Evaluation:
    if runner.labels is not None and list(runner.labels) != list(data.classes):
        raise DataError(f"the model's labels ({', '.join(runner.labels)}) differ from the data's classes ({', '.join(data.classes)})")
    if data.image_shape != runner.input_shape:
        fix = (f"pass --image-size {runner.input_shape[0]}x{runner.input_shape[1]}" if data.image_shape[2] == runner.input_shape[2]
               else "the model was trained on images with another number of colour channels")
        raise DataError(
            f"the model takes {'x'.join(map(str, runner.input_shape))} images but the data is {'x'.join(map(str, data.image_shape))}; {fix}"
        )
    scores = runner.predict(data.x)
    pred = np.argmax(scores, 1)
    fa = analyse(data.y, scores, data.classes, image_shape=data.image_shape, method_name=runner.name)
    cm = fa.confusion
    tp = np.diag(cm).astype(np.float64)
    precision = (tp / np.maximum(cm.sum(0), 1)).tolist()
    recall = (tp / np.maximum(cm.sum(1), 1)).tolist()
    # single-image latency, as on the device (after a warm-up)
    sample = data.x[: min(latency_runs, len(data))]
    runner.predict_one(sample[0])
    times = []
    for img in sample:
        t = time.perf_counter()
        runner.predict_one(img)
        times.append((time.perf_counter() - t) * 1000)
    latency = {"mean": round(float(np.mean(times)), 4), "p50": round(float(np.percentile(times, 50)), 4),
               "p95": round(float(np.percentile(times, 95)), 4), "runs": len(times)}
    score, source = recorded_score(Path(runner.name))
    return Evaluation(runner.name, data.name, split, list(data.classes), float(np.mean(pred == data.y)), fa,
                      precision, recall, latency, pred, scores, training_score=score, training_score_from=source)


def recorded_score(model: Path) -> tuple[dict[str, Any] | None, str | None]:
    """How ``train-model`` scored ``model`` and where that was read: a bundle's (or a ``.tflite`` file's folder's)
    ``manifest.json`` ``training_score``, or the ``train_report.json`` beside a ``.keras`` model. A manifest written before
    ``training_score`` existed gives its ``training.val_accuracy``, marked as a carve of unrecorded size."""
    folder = model if model.is_dir() else model.parent
    for name in (("train_report.json", "manifest.json") if model.suffix == ".keras" else ("manifest.json",)):
        path = folder / name
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        if name == "train_report.json":
            score = training_score(doc)
        elif isinstance(doc.get("training_score"), dict):
            score = doc["training_score"]
        elif isinstance(doc.get("training"), dict) and isinstance(doc["training"].get("val_accuracy"), (int, float)):
            score = {"scored_by": "validation carve", "accuracy": round(float(doc["training"]["val_accuracy"]), 4),
                     "method": "train-model's validation carve (its size is not recorded in this manifest: no interval)"}
        elif str((doc.get("accuracy") or {}).get("split", "")).startswith("training"):
            score = dict(NOT_SCORED)
        else:
            score = None
        if score is not None:
            return score, str(path)
    return None, None


def tta_scores(runner: TFLiteRunner | KerasRunner, x: np.ndarray, plain: np.ndarray | None = None) -> np.ndarray:
    """airbench's test-time augmentation: the image and its mirror, and both again shifted one pixel up-left and
    down-right (reflect padding); the unshifted pair weighs half, the shifted pairs a quarter each.
    ``plain``: the scores of ``x`` itself when already computed (the single-pass evaluation's)."""

    def mirrored(v: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        scores = runner.predict(v) if scores is None else scores
        return 0.5 * scores + 0.5 * runner.predict(np.ascontiguousarray(v[:, :, ::-1]))

    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [np.ascontiguousarray(padded[:, :h, :w]), np.ascontiguousarray(padded[:, 2:h + 2, 2:w + 2])]
    return 0.5 * mirrored(x, plain) + 0.25 * sum(mirrored(v) for v in shifted)


def confusion_text(ev: Evaluation) -> str:
    return "true \\ predicted\n" + ev.analysis.confusion_text() + "\n"


def report_text(ev: Evaluation) -> str:
    lo, hi = ev.ci95
    lines = [f"{ev.model} on {ev.dataset} ({ev.split}, {int(ev.confusion.sum())} images)",
             f"accuracy {ev.accuracy:.4f} (95 % CI {lo:.4f}-{hi:.4f}, Wilson, {ev.images} images)",
             *([f"small set: ±{ev.margin_points:.1f} points (the smallest class has {ev.smallest_class} images, fewer than "
                f"{SMALL_CLASS}): differences of a few points are chance"] if ev.small_set else []),
             f"training score: {score_text(ev.training_score)}" + (f" [{ev.training_score_from}]" if ev.training_score_from else ""),
             f"latency per image: mean {ev.latency_ms['mean']:.3f} ms, p95 {ev.latency_ms['p95']:.3f} ms",
             *([f"with test-time augmentation (6 views, --tta): accuracy {ev.tta_accuracy:.4f}"] if ev.tta_accuracy is not None else []),
             "", f"{'class':>12} {'precision':>9} {'recall':>7} {'support':>7}"]
    for i, c in enumerate(ev.classes):
        lines.append(f"{c:>12} {ev.precision[i]:9.4f} {ev.recall[i]:7.4f} {int(ev.confusion[i].sum()):7d}")
    return "\n".join(lines) + "\n\n" + confusion_text(ev)


def load_eval_data(data: str, split: str, image_size: tuple[int, int] | None, val_fraction: float, seed: int) -> Dataset:
    if split == "val":
        return train_val(data, image_size, val_fraction, seed)[1]
    return load_dataset(data, split, image_size)
