"""The CNN recipes: the paper's for ``paper``, the classic or the airbench recipe for ``edge``.

``train-model --data cifar10 --arch edge --epochs 16 --out runs/edge`` writes ``model.keras``
(the best epoch), ``labels.txt``, ``history.json``, ``learning_curves.png`` and
``train_report.json``.

Long runs survive interruption (converter.training.resume): ``train-model ... --resume`` with the same
``--out`` and ``--epochs`` continues from the last epoch's start, on the same learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from converter.data.batches import AugmentedBatches
from converter.data.datasets import Dataset
from converter.errors import DataError
from converter.models.cnn import count_macs, edge_cnn, inference_spec, paper_cnn
from converter.training.airbench import AirbenchHyper, AirbenchSGD, Lookahead, dirac_init
from converter.training.artifacts import save_run
from converter.training.config import TrainConfig
from converter.training.distributed import same_on_every_worker, worker_count, worker_index
from converter.training.resume import LOOKAHEAD_FILE, RESUME_FILE, ResumePoint, load_resume
from converter.training.schedules import WarmupLinearDecay, warmup_linear_decay

log = logging.getLogger(__name__)




def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


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
        schedule = warmup_linear_decay(cfg.lr or 0.2, steps, cfg.epochs, cfg.warmup_epochs)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, use_ema=use_ema(cfg, steps), ema_momentum=0.99)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model


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

    With a ``strategy`` (converter.training.distributed) the model is built and trained in its scope, data-parallel;
    only the chief worker writes to ``out``, the others keep their resume points in ``out/worker-N``.
    ``soft`` (one row per training image, edge CNN only) replaces the one-hot training targets: distillation
    (converter.training.distill); ``teachers`` describes them in the report.
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
            model, initial_epoch, past, seconds_before = load_resume(cfg, train, out, steps_per_epoch)
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
    batches = AugmentedBatches(
        train.x, targets(train.y) if soft is None else soft, batch, seed=cfg.seed, augment=cfg.augments(),
        pad=cfg.translate if cfg.translate is not None else max(2, train.image_shape[0] // 16),
        alt_flip_seed=cfg.seed if "alt-flip" in features else None, cutout=cfg.cutout, fill=fill,
        skip_epochs=initial_epoch,  # a resumed run sees the same data as an uninterrupted one
    )
    hist = model.fit(
        batches,
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
        **save_run(out, final, train, val, history, title=f"{cfg.arch} on {train.name}"),
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


