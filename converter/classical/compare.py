"""``compare-models``: classical machine learning versus the CNNs, on one held-out split.

``compare-models --data cifar10-train.tar.gz --out reports/cifar10`` fits every hand-crafted
feature (:mod:`converter.classical.features`) with every scikit-learn classifier (:mod:`converter.classical.baselines`),
trains (or reuses, ``--paper-model``/``--edge-model``) the paper CNN and the edge CNN, converts
them to int8, and scores everything on the same held-out images. It writes ``results.json``,
``report.md`` (generated from the JSON), ``accuracy.png`` and, for each CNN, a confusion matrix
and a grid of its most confident mistakes. ``--quick`` runs a small subsample in a few minutes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import Dataset, check_same_classes, load_dataset, stratified_sample, train_val
from converter.errors import ConverterError, DataError, ModelError
from converter.evaluation.failures import FailureAnalysis, plot_confusion, plot_mistakes
from converter.evaluation.report import MethodResult, per_class_accuracy

log = logging.getLogger(__name__)

METHOD_GROUPS = ("classical", "paper", "edge")
ARCH_LABELS = {"paper": "paper CNN", "edge": "edge CNN"}
DEFAULT_EPOCHS = {"paper": 16, "edge": 16}
QUICK = {"limit_per_class": 100, "eval_limit_per_class": 50, "epochs": 5, "calibration": 100}


@dataclass
class Splits:
    train: Dataset  # every method trains on exactly these images
    val: Dataset  # picks the CNNs' best epoch
    held_out: Dataset  # every method is scored on exactly these images
    description: str
    notes: list[str] = field(default_factory=list)


def parse_methods(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHOD_GROUPS]
    if unknown or not names:
        raise ConverterError(f"unknown method(s) {', '.join(unknown) or '(none given)'} in --methods: choose from {', '.join(METHOD_GROUPS)}")
    return names


def load_splits(
    data: str,
    image_size: tuple[int, int] | None,
    eval_split: str = "auto",
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Training data, the CNNs' validation split, and the held-out split everything is scored on.

    The held-out split is the dataset's ``test`` split when it has one (``auto`` or ``test``), else
    the validation split carved by :func:`converter.data.datasets.train_val` (as ``train-model`` carves it,
    so models trained there can be reused).
    """
    train, val = train_val(data, image_size, val_fraction, seed)
    if eval_split in ("auto", "test"):
        try:
            test = load_dataset(data, "test", image_size)
        except DataError as exc:
            if eval_split == "test":
                raise DataError(f"--eval-split test: {exc}") from exc
            log.info("no test split in %s: scoring on the validation split", data)
        else:
            check_same_classes(train, test)
            return Splits(train, val, test, "the dataset's own test split")
    desc = f"validation split: {val_fraction:.0%} of each class carved from the training data with seed {seed}, as train-model does"
    note = "The held-out set is also the validation set that chose the CNNs' best epoch, which favours the CNNs slightly."
    return Splits(train, val, val, desc, [note])


def limit(ds: Dataset, per_class: int | None, seed: int) -> Dataset:
    if not per_class or per_class >= max(ds.counts().values()):
        return ds
    return ds.subset(stratified_sample(ds.y, per_class, seed))


# --------------------------------------------------------------------------- CNNs


@dataclass
class CnnModel:
    path: Path
    train_seconds: float
    train_images: int
    details: dict[str, Any]
    notes: list[str]


def _check_model(model: Any, path: Path, splits: Splits) -> None:
    shape = tuple(int(d) for d in model.input_shape[1:])
    if shape != splits.train.image_shape:
        got, want = "x".join(map(str, shape)), "x".join(map(str, splits.train.image_shape))
        raise ModelError(f"{path} takes {got} images but the data is {want}; pass --image-size {shape[0]}x{shape[1]} or a matching model")
    n_out = int(model.output_shape[-1])
    if n_out != len(splits.train.classes):
        raise ModelError(f"{path} has {n_out} outputs but the data has {len(splits.train.classes)} classes; pass a model trained on this data")


def reuse_cnn(path: Path, splits: Splits) -> CnnModel:
    """A model written by ``train-model``; its ``train_report.json`` (when beside it) supplies the training numbers."""
    if not path.is_file():
        raise ModelError(f"model not found: {path}; pass the model.keras written by train-model")
    report_path = path.parent / "train_report.json"
    report: dict[str, Any] = {}
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"unreadable {report_path}: {exc}; delete it or retrain") from exc
    if report.get("classes") and tuple(report["classes"]) != splits.train.classes:
        raise ModelError(f"{path} was trained on classes {report['classes']}, not {list(splits.train.classes)}; pass a model trained on this data")
    notes = [f"reused from {path} (not retrained)"]
    if not report:
        notes.append("no train_report.json beside the model: training time and images unknown (shown as 0)")
    elif report.get("train_images") != len(splits.train):
        notes.append(f"trained on {report.get('train_images')} images, not the {len(splits.train)} the classical methods used")
    keys = ("best_epoch", "val_accuracy", "params", "macs", "precision", "config", "machine", "date")
    details: dict[str, Any] = {k: report[k] for k in keys if k in report}
    details["reused_from"] = str(path)
    return CnnModel(path, float(report.get("train_seconds", 0.0)), int(report.get("train_images", 0)), details, notes)


def train_cnn(arch: str, epochs: int, splits: Splits, work: Path, seed: int, *, augment: bool | None = None) -> CnnModel:
    from converter.training.classic import train_model  # noqa: PLC0415 - imports TensorFlow
    from converter.training.config import TrainConfig  # noqa: PLC0415 - imports TensorFlow

    cfg = TrainConfig(arch=arch, epochs=epochs, seed=seed, augment=augment)
    log.info("training the %s for %d epochs into %s", ARCH_LABELS[arch], epochs, work / arch)
    report = train_model(cfg, splits.train, splits.val, work / arch)
    details = {k: report[k] for k in ("best_epoch", "val_accuracy", "params", "macs", "precision", "config")}
    details["augmented"] = cfg.augments()
    return CnnModel(work / arch / "model.keras", float(report["train_seconds"]), len(splits.train), details, [])


def cnn_results(cnn: CnnModel, arch: str, splits: Splits, work: Path, *, int8: bool, calibration: int, seed: int) -> list[tuple[MethodResult, np.ndarray]]:
    """Score the float model (Keras) and, with ``int8``, its full-integer TFLite conversion."""
    import keras  # noqa: PLC0415

    from converter.evaluation.evaluate import keras_predict, tflite_predict  # noqa: PLC0415
    from converter.export.quantize import quantize_model  # noqa: PLC0415

    try:
        model = keras.models.load_model(cnn.path, compile=False)
    except Exception as exc:
        raise ModelError(f"cannot load {cnn.path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    _check_model(model, cnn.path, splits)
    held = splits.held_out
    label = ARCH_LABELS[arch]
    keras_predict(model, held.x)  # warm-up: the first calls trace the graph (one trace per batch shape)
    t0 = time.perf_counter()
    probs = keras_predict(model, held.x)
    infer_s = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(probs, 1) == held.y))
    log.info("%s (float): accuracy %.2f %% on %d held-out images", label, 100 * acc, len(held))
    out = [
        (
            MethodResult(
                key=f"{arch}/float",
                name=f"{label} (float, Keras)",
                kind="cnn",
                accuracy=acc,
                per_class=per_class_accuracy(held.y, np.argmax(probs, 1), held.classes),
                train_seconds=round(cnn.train_seconds, 1),
                inference_ms=1000.0 * infer_s / len(held),
                size_bytes=cnn.path.stat().st_size,
                size_of=".keras file",
                train_images=cnn.train_images,
                notes=list(cnn.notes),
                details={**cnn.details, "inference": "Keras predict, batches of 256"},
            ),
            probs,
        )
    ]
    if not int8:
        return out
    n_cls = len(splits.train.classes)
    calib = splits.train.x[stratified_sample(splits.train.y, max(1, calibration // n_cls), seed)]
    t0 = time.perf_counter()
    tflite = quantize_model(cnn.path, calib, work / f"{arch}-int8.tflite")
    convert_s = time.perf_counter() - t0
    log.info("%s: int8 conversion %.1f s; scoring %d images one at a time in LiteRT", label, convert_s, len(held))
    t0 = time.perf_counter()
    probs8 = tflite_predict(tflite, held.x)
    infer8_s = time.perf_counter() - t0
    pred8 = np.argmax(probs8, 1)
    acc8 = float(np.mean(pred8 == held.y))
    agree = float(np.mean(pred8 == np.argmax(probs, 1)))
    log.info("%s (int8): accuracy %.2f %%, %.1f %% same predictions as float", label, 100 * acc8, 100 * agree)
    out.append(
        (
            MethodResult(
                key=f"{arch}/int8",
                name=f"{label} (int8, LiteRT)",
                kind="cnn",
                accuracy=acc8,
                per_class=per_class_accuracy(held.y, pred8, held.classes),
                train_seconds=round(cnn.train_seconds + convert_s, 1),
                inference_ms=1000.0 * infer8_s / len(held),
                size_bytes=tflite.stat().st_size,
                size_of=".tflite file",
                train_images=cnn.train_images,
                notes=list(cnn.notes),
                details={
                    **cnn.details,
                    "convert_seconds": round(convert_s, 1),
                    "calibration_images": len(calib),
                    "agreement_with_float": agree,
                    "inference": "LiteRT interpreter, one image per invoke, default threads",
                },
            ),
            probs8,
        )
    )
    return out


# --------------------------------------------------------------------------- the run


def write_failure_analysis(fa: FailureAnalysis, images: np.ndarray, out: Path, tag: str) -> dict[str, Any]:
    confusion_png = plot_confusion(fa, out / f"confusion_{tag}.png").name
    mistakes_png = plot_mistakes(fa, images, out / f"mistakes_{tag}.png").name
    (out / f"confusion_{tag}.txt").write_text(fa.confusion_text() + "\n")
    return fa.to_json(confusion_png, mistakes_png)
