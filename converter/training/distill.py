"""Knowledge distillation: trained models' class probabilities as the edge CNN's soft training targets.

``train-model --teacher MODEL[,MODEL...]`` averages the teachers' probabilities (each on the image and
its mirror image, so the target does not depend on the random flip), softens them with a temperature,
and trains on ``weight * teacher + (1 - weight) * one_hot`` instead of the smoothed one-hot labels: an
ensemble of larger or pretrained models (an EfficientNet-Lite0 on photos, several edge CNNs on CIFAR-10)
teaches one small network that still runs in one pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import Dataset
from converter.errors import DataError

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class Teacher:
    path: Path
    model: Any  # keras.Model
    image_size: tuple[int, int]
    classes: list[str] | None  # from labels.txt beside the model, when there is one


def resolve_teacher_path(spec: str) -> Path:
    """A ``.keras`` file, or a train-model output folder holding ``model.keras``."""
    path = Path(spec)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise DataError(f"--teacher {spec}: no such model; give a model.keras or the train-model --out folder that holds one")
    return path


def load_teacher(spec: str) -> Teacher:
    import keras  # noqa: PLC0415  (workstation side only)

    path = resolve_teacher_path(spec)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # a corrupt or foreign file: Keras raises many kinds
        raise DataError(f"--teacher {spec}: {path} is not a readable Keras model ({type(exc).__name__}); "
                        "give a model.keras written by train-model") from None
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise DataError(f"--teacher {spec}: its input {shape} is not a fixed-size image; give an image classifier from train-model")
    labels = path.parent / "labels.txt"
    classes = [line.strip() for line in labels.read_text().splitlines() if line.strip()] if labels.is_file() else None
    return Teacher(path, model, (int(shape[1]), int(shape[2])), classes)


def check_classes(teacher: Teacher, classes: Sequence[str]) -> None:
    outputs = int(teacher.model.output_shape[-1])
    if teacher.classes is not None and teacher.classes != list(classes):
        raise DataError(f"--teacher {teacher.path}: it was trained on the classes {', '.join(teacher.classes)}, this data has "
                        f"{', '.join(classes)}; distil from a model trained on the same classes, in the same order")
    if outputs != len(classes):
        raise DataError(f"--teacher {teacher.path}: it predicts {outputs} classes, this data has {len(classes)}; "
                        "distil from a model trained on the same classes")


def probabilities(teacher: Teacher, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The teacher's class probabilities, averaged over each image and its mirror image."""
    x = x.astype(np.float32)
    p = teacher.model.predict(x, batch_size=batch, verbose=0)
    p = p + teacher.model.predict(x[:, :, ::-1], batch_size=batch, verbose=0)
    return (p / 2).astype(np.float32)


def soften(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)``: T > 1 raises the classes the teacher ranks second and below."""
    if temperature == 1:
        return p
    logits = np.log(np.clip(p, 1e-12, 1.0)) / temperature
    logits -= logits.max(1, keepdims=True)
    q = np.exp(logits)
    return (q / q.sum(1, keepdims=True)).astype(np.float32)


def soft_targets(y: np.ndarray, teacher_p: np.ndarray, weight: float) -> np.ndarray:
    """``weight * teacher + (1 - weight) * one_hot(y)``, rows summing to one."""
    one_hot = np.eye(teacher_p.shape[1], dtype=np.float32)[y]
    return (weight * teacher_p + (1 - weight) * one_hot).astype(np.float32)


def check_settings(weight: float, temperature: float) -> None:
    if not 0 < weight <= 1:
        raise DataError(f"--distill-weight {weight}: use a share above 0 and at most 1 (1: the teachers' probabilities only)")
    if temperature <= 0:
        raise DataError(f"--distill-temperature {temperature}: use a temperature above 0 (1: the teachers' probabilities as they are)")


def teacher_targets(specs: tuple[str, ...], train: Dataset, val: Dataset, load: Callable[[tuple[int, int] | None], tuple[Dataset, Dataset]],
                    *, weight: float, temperature: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The distillation targets for ``train`` from the teachers' averaged probabilities, and their report entry.

    A teacher that takes another image size sees the same images loaded at its size (same carve, same order).
    """
    t0 = time.perf_counter()
    at_size: dict[tuple[int, int], tuple[Dataset, Dataset]] = {(train.image_shape[0], train.image_shape[1]): (train, val)}
    p_train = np.zeros((len(train), len(train.classes)), np.float32)
    p_val = np.zeros((len(val), len(train.classes)), np.float32)
    entries = []
    for spec in specs:
        teacher = load_teacher(spec)
        check_classes(teacher, train.classes)
        if teacher.image_size not in at_size:
            tr, va = load(teacher.image_size)
            if not (np.array_equal(tr.y, train.y) and np.array_equal(va.y, val.y)):
                raise DataError(f"--teacher {spec}: the data loaded at its {teacher.image_size[0]}x{teacher.image_size[1]} px does not "
                                "line up with the training images; give teachers that take the training image size")
            at_size[teacher.image_size] = (tr, va)
        tr, va = at_size[teacher.image_size]
        p = probabilities(teacher, tr.x)
        p_train += p / len(specs)
        entry: dict[str, Any] = {"model": str(teacher.path), "image_size": list(teacher.image_size),
                                 "train_accuracy": round(float(np.mean(p.argmax(1) == train.y)), 4)}
        if len(val):
            pv = probabilities(teacher, va.x)
            p_val += pv / len(specs)
            entry["val_accuracy"] = round(float(np.mean(pv.argmax(1) == val.y)), 4)
        entries.append(entry)
        log.info("teacher %s: %s", teacher.path, ", ".join(f"{k} {v}" for k, v in entry.items() if k.endswith("accuracy")))
    info: dict[str, Any] = {"models": entries, "weight": weight, "temperature": temperature,
                            "train_accuracy": round(float(np.mean(p_train.argmax(1) == train.y)), 4),
                            "val_accuracy": round(float(np.mean(p_val.argmax(1) == val.y)), 4) if len(val) else None,
                            "seconds": round(time.perf_counter() - t0, 1)}
    log.info("distilling from %d teacher(s) (together: val accuracy %s), weight %.2f, temperature %.1f, %.0f s",
             len(specs), info["val_accuracy"], weight, temperature, info["seconds"])
    return soft_targets(train.y, soften(p_train, temperature), weight), info
