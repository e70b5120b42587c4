"""Resume points: a CNN run interrupted at any epoch continues where it stopped (``train-model ... --resume``).

At the start of every epoch the model, with its optimizer state (step count, momentum, weight average), is saved to
``resume.keras``; ``resume.json`` beside it keeps the training seconds spent before that epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import keras

import converter.training.airbench  # registers AirbenchSGD, which resume.keras may name
import converter.training.schedules  # noqa: F401 - registers WarmupLinearDecay, which resume.keras names
from converter.data.datasets import Dataset
from converter.errors import DataError
from converter.models.cnn import network_options
from converter.training.config import TrainConfig

log = logging.getLogger(__name__)


RESUME_FILE = "resume.keras"
LOOKAHEAD_FILE = "lookahead.npz"  # the lookahead average at the resume point


class ResumePoint(keras.callbacks.Callback):
    """Saves the model with its optimizer state at the start of each epoch (after any EMA swap-back), for ``--resume``.

    ``resume.json`` beside it keeps the training seconds spent before that epoch.
    """

    def __init__(self, path: Path, seconds_before: float = 0.0) -> None:
        super().__init__()
        self.path = path
        self.seconds_before = seconds_before
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        tmp = self.path.with_name(self.path.stem + ".tmp.keras")
        self.model.save(tmp)
        tmp.replace(self.path)  # a kill while saving never leaves a half-written resume point
        self.path.with_suffix(".json").write_text(json.dumps({"epoch": epoch, "train_seconds": round(self.seconds(), 1)}))


class ResumeState(NamedTuple):
    model: Any  # compiled, with the optimizer state of the start of the interrupted epoch
    initial_epoch: int  # that epoch's number (0-based)
    history: dict[str, list[float]]  # the epochs before it
    seconds: float  # training time spent before it


def load_resume(cfg: TrainConfig, train: Dataset, out: Path, steps_per_epoch: int) -> ResumeState:
    """Everything ``--resume`` needs from the output folder of an interrupted run."""
    path = out / RESUME_FILE
    if not path.is_file():
        raise DataError(f"--resume: {path} not found; resume needs the --out folder of a run this version started (or drop --resume)")
    model = keras.models.load_model(path)
    shape, classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
    if shape != tuple(train.image_shape) or classes != len(train.classes):
        raise DataError(
            f"--resume: {path} takes {'x'.join(map(str, shape))} images and {classes} classes, this data "
            f"{'x'.join(map(str, train.image_shape))} and {len(train.classes)}; resume with the run's own --data and --image-size"
        )
    started = network_options(model) if cfg.arch == "edge" else None
    if started is not None and started != (cfg.pool_before_bn, cfg.activation):
        pooled_first, activation = started
        flags = " ".join((["--pool-before-bn"] if pooled_first else []) + [f"--activation {activation}"])
        raise DataError(f"--resume: {path} was started as a different network ({flags}); resume with those flags")
    done_steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    initial_epoch = done_steps // steps_per_epoch
    lr = model.optimizer.get_config().get("learning_rate")
    total = lr.get("config", {}).get("total") if isinstance(lr, dict) else None  # a WarmupLinearDecay's planned steps
    if total is not None and total != steps_per_epoch * cfg.epochs:
        planned = round(total / steps_per_epoch)
        raise DataError(f"--resume: {path} was started with --epochs {planned} (its learning-rate schedule); resume with --epochs {planned}")
    if initial_epoch >= cfg.epochs:
        raise DataError(f"--resume: {out} already finished its {cfg.epochs} epochs; train a new run instead")
    history: dict[str, list[float]] = {}
    path_csv = out / "history.csv"
    if path_csv.is_file():
        with path_csv.open(newline="") as f:
            reader = csv.DictReader(f)
            kept = [row for row in reader if int(row["epoch"]) < initial_epoch]
            fields = reader.fieldnames or []
        with path_csv.open("w", newline="") as f:  # drop rows of epochs that will run again
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        for row in kept:
            for k, v in row.items():
                if k not in ("epoch", "learning_rate"):
                    history.setdefault(k, []).append(float(v))
    try:
        seconds = float(json.loads(path.with_suffix(".json").read_text())["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        seconds = 0.0  # the time is only reported; a missing record does not stop the resume
    log.info("resuming %s at epoch %d of %d (step %d)", out, initial_epoch + 1, cfg.epochs, done_steps)
    return ResumeState(model, initial_epoch, history, seconds)
