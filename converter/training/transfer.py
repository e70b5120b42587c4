"""Transfer learning from an ImageNet backbone: the default recipe for the user's own photo classes.

Two stages, both on a 2-core machine or a Pi in minutes:

1. **Fast stage** (always): the frozen backbone's pooled features are computed once per image and view
   (the image and its mirror image when augmenting), cached on disk, and a softmax head (dropout, dense)
   is trained on them. The head sees thousands of feature vectors per second, so its epochs cost nothing.
2. **Fine-tuning** (``--fine-tune N``): the top N blocks of the backbone are unfrozen and trained with the
   head on augmented images at a low learning rate, batch normalisation kept frozen (its statistics were
   learnt on ImageNet and a small batch would spoil them).

The result is one Keras model from uint8-range pixels to class probabilities, which ``convert-model`` turns
into int8 like any other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from converter.data.augment import augmented_view
from converter.data.batches import AugmentedBatches
from converter.data.datasets import Dataset, default_cache_dir, prune_cache, touch_cache_entry
from converter.evaluation.cross_validation import cross_validate as repeated_kfold
from converter.export.convert import predict_batch
from converter.models.backbones import Backbone, build_backbone
from converter.models.cnn import count_macs
from converter.training.artifacts import save_run
from converter.training.heads import LinearFit, fit_logreg, linear_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferConfig:
    backbone: str = "efficientnet-lite0"
    weights: str = "imagenet"  # or "none": random weights (tests, or a deliberate from-scratch run)
    alpha: float | None = None  # MobileNet width
    epochs: int = 40  # head epochs on the cached features
    lr: float = 1e-3  # head (Adam)
    batch_size: int = 64
    dropout: float = 0.2
    label_smoothing: float = 0.1
    augment: bool = True  # mirror-image features in the fast stage; flips and shifts when fine-tuning
    fine_tune: int = 0  # top blocks of the backbone to train after the head (0: the fast stage only)
    fine_tune_epochs: int = 3
    fine_tune_lr: float = 1e-4
    seed: int = 0
    head: str = "auto"  # auto: logreg below SMALL_SET photos a class, else dense; dense: the trained softmax head; logreg
    views: int | None = None  # feature views a training photo (None: plain + mirror, 1 without --augment; more: crops)
    cv_repeats: int = 3  # repeated stratified k-fold scoring of small sets (0: off)


HEADS = ("auto", "dense", "logreg")
SMALL_SET = 100  # photos in the smallest class below which --head auto picks logreg
CV_BELOW = 50  # photos in the smallest class below which the report scores the head by repeated k-fold cross-validation
MAX_VIEWS = 32
FeaturesHook = Callable[[np.ndarray, np.ndarray], object]  # (training features, validation features), plain view, a row a photo


def auto_views(cfg: TransferConfig, photos: int, smallest_class: int) -> int:
    """Feature views a photo: ``cfg.views`` when given, else plain + mirror (1 without augmentation).

    More views (random resized crops with colour jitter) were measured on 20 photos a class (benchmarks/few_photos.py,
    5 draws): 10 views moved the logistic head by +0.4 points on dogs-vs-cats and -0.8 on five CIFAR-10 classes, within
    the draws' spread, so they are not the default; ``--views N`` keeps them at hand.
    """
    del photos, smallest_class  # the measured choice does not depend on them (yet)
    if cfg.views is not None:
        return max(1, cfg.views)
    return 2 if cfg.augment else 1


def _views(x: np.ndarray, augment: bool, n: int | None = None, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """The training photos as ``n`` views: plain, mirror, then ``augmented_view`` draws (``n`` None: 2 or 1)."""
    n = (2 if augment else 1) if n is None else n
    out = [("plain", x), ("mirror", x[:, :, ::-1])][:n]
    rng = np.random.default_rng(seed)
    for k in range(2, n):
        out.append((f"crop{k - 1}-s{seed}", np.stack([augmented_view(img, rng) for img in x])))
    return out


def _array_digest(x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{x.shape}|{x.dtype}".encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()[:20]


def compute_features(
    model: keras.Model, x: np.ndarray, *, tag: str, cache_dir: Path | None = None, batch: int = 32, what: str = "images"
) -> np.ndarray:
    """``model``'s outputs for ``x``, computed once: cached under ``cache_dir`` by ``tag`` and the pixels' digest."""
    cache = (cache_dir or default_cache_dir()) / "features" / f"{tag}-{_array_digest(x)}.npy"
    if cache.is_file():
        try:
            feats = np.load(cache, allow_pickle=False)
            if len(feats) == len(x):
                log.info("features of %d %s from cache %s", len(x), what, cache)
                touch_cache_entry(cache)
                return feats
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable feature cache %s (%s)", cache, exc)
    batch = predict_batch(x.shape[1:3], batch)  # 32 for small images, 10 at 224 px: the activations stay bounded
    out: list[np.ndarray] = []
    bar = keras.utils.Progbar(len(x), unit_name="image") if sys.stderr.isatty() else None
    t0, last_log = time.perf_counter(), 0.0
    chunk = batch * 8  # predict() compiles the graph once: twice the speed of calling the model eagerly
    for i in range(0, len(x), chunk):
        out.append(np.asarray(model.predict(x[i : i + chunk].astype(np.float32), batch_size=batch, verbose=0), np.float32))
        done = min(len(x), i + chunk)
        if bar is not None:
            bar.update(done)
        elif time.perf_counter() - last_log > 10 or done == len(x):
            last_log = time.perf_counter()
            log.info("features: %d/%d %s (%.1f per second)", done, len(x), what, done / max(1e-9, last_log - t0))
    feats = np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(cache)
    except OSError as exc:
        log.warning("could not cache features in %s: %s", cache, exc)
        return feats
    prune_cache(cache.parent.parent, keep=(cache,))  # the whole cache (datasets, features, weights) under its bound
    return feats


def _head(features: int, classes: int, dropout: float) -> keras.Model:
    inputs = keras.Input((features,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(inputs)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax", name="classifier")(x), name="head")


def assemble(backbone: keras.Model, head: keras.Model, name: str) -> keras.Model:
    """One model from pixels to probabilities: the backbone, then the head's layers (weights shared)."""
    x = backbone.output
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(backbone.input, x, name=name)


def _block_ids(model: keras.Model) -> list[str]:
    """The backbone's blocks in order (``blocks_12`` for EfficientNet-Lite, ``block_15`` / ``expanded_conv_10`` for MobileNets)."""
    seen: dict[str, None] = {}
    for layer in _all_layers(model):
        m = re.match(r"^(blocks?_\d+|expanded_conv(?:_\d+)?)_", layer.name)
        if m:
            seen.setdefault(m[1], None)
    return list(seen)


def _all_layers(model: keras.Model) -> list[Any]:
    out: list[Any] = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def unfreeze_top(backbone: keras.Model, blocks: int) -> int:
    """Make the top ``blocks`` blocks and everything after them trainable, batch norm excepted; the layers unfrozen."""
    ids = _block_ids(backbone)
    if not ids:
        raise ValueError(f"{backbone.name}: no blocks found to fine-tune")
    first = ids[max(0, len(ids) - blocks)]
    backbone.trainable = True  # recursive (nested Keras Applications models too); then each leaf layer is set
    unfrozen, reached = 0, False
    for layer in _all_layers(backbone):
        reached = reached or layer.name.startswith(first + "_")
        train = reached and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = train
        unfrozen += bool(train and layer.weights)
    return unfrozen


def _fit_dense(cfg: TransferConfig, f: np.ndarray, y: np.ndarray, n_cls: int,
               validation: tuple[np.ndarray, np.ndarray] | None) -> tuple[keras.Model, dict[str, list[float]]]:
    """The dropout + softmax head trained with Adam (cosine decay) and label smoothing on feature vectors."""
    head = _head(int(f.shape[1]), n_cls, cfg.dropout)
    steps = math.ceil(len(f) / cfg.batch_size) * cfg.epochs
    head.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, steps)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    eye = np.eye(n_cls, dtype=np.float32)
    hist = head.fit(f, eye[y], validation_data=validation, epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0)
    return head, {k: [float(v) for v in vs] for k, vs in hist.history.items() if k != "learning_rate"}


def cross_validate(kind: str, cfg: TransferConfig, f: np.ndarray, y: np.ndarray, groups: np.ndarray, *, plain: np.ndarray,
                   n_cls: int, C: float | None) -> dict[str, Any]:
    """Repeated stratified k-fold accuracy of the ``kind`` head on the cached features (converter.evaluation.cross_validation).

    The logistic head keeps the C chosen on all photos (not re-chosen per fold).
    """

    def fit_predict(a: np.ndarray, b: np.ndarray, r: int) -> np.ndarray:
        if kind == "logreg":
            return fit_logreg(f[a], y[a], groups[a], n_cls, C=C).predict(f[b])
        keras.utils.set_random_seed(cfg.seed + r)
        head, _ = _fit_dense(cfg, f[a], y[a], n_cls, None)
        return np.argmax(head.predict(f[b], verbose=0), 1)

    repeats = cfg.cv_repeats if kind == "logreg" else 1  # a dense head takes seconds a fold; the logistic one milliseconds
    return repeated_kfold(fit_predict, y, groups, plain=plain, n_cls=n_cls, repeats=repeats, seed=cfg.seed, what=f"the {kind} head")


def train_transfer(cfg: TransferConfig, train: Dataset, val: Dataset, cache_dir: Path | None = None,
                   verbose: int = 2, *, features_hook: FeaturesHook | None = None) -> tuple[keras.Model, dict[str, Any]]:
    """Train ``cfg.backbone`` + a head on ``train``; the float32 model and a report (stage times, accuracies).

    ``features_hook(train_features, val_features)``: called once the backbone's pooled features are cached, with one
    plain-view row a photo in the datasets' order (the dataset doctor's mislabel check reads them)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(cfg.seed)
    n_cls = len(train.classes)
    t0 = time.perf_counter()
    bb: Backbone = build_backbone(cfg.backbone, train.image_shape, cfg.weights, cfg.alpha)
    backbone = bb.model
    backbone.trainable = False
    tag = f"{cfg.backbone}{'' if cfg.alpha is None else f'-a{cfg.alpha}'}-{hashlib.sha256(bb.weights.encode()).hexdigest()[:8]}"
    if not bb.pretrained:
        tag += f"-seed{cfg.seed}"
    counts = np.bincount(train.y, minlength=n_cls)
    smallest = int(counts[counts > 0].min()) if len(train) else 0
    n_views = auto_views(cfg, len(train), smallest)
    kind = cfg.head if cfg.head != "auto" else ("logreg" if smallest < SMALL_SET else "dense")
    if kind not in HEADS[1:]:
        raise ValueError(f"unknown head {cfg.head!r}: choose one of {', '.join(HEADS)}")
    feats, ys = [], []
    for view, xv in _views(train.x, cfg.augment, n_views, cfg.seed):
        feats.append(compute_features(backbone, xv, tag=f"{tag}-{view}", cache_dir=cache_dir, what=f"training images ({view})"))
        ys.append(train.y)
    f_train, y_train = np.concatenate(feats), np.concatenate(ys)
    groups = np.tile(np.arange(len(train)), n_views)  # the photo each feature vector came from
    plain = np.repeat(np.arange(n_views) == 0, len(train))
    f_val = compute_features(backbone, val.x, tag=f"{tag}-plain", cache_dir=cache_dir, what="validation images")
    features_s = time.perf_counter() - t0
    if features_hook is not None:
        features_hook(f_train[: len(train)], f_val)  # the plain view comes first (_views)

    t1 = time.perf_counter()
    eye = np.eye(n_cls, dtype=np.float32)
    logreg: LinearFit | None = None
    if kind == "logreg":
        logreg = fit_logreg(f_train, y_train, groups, n_cls, seed=cfg.seed, score_views=plain)
        head = linear_head(logreg)
        history: dict[str, list[float]] = {}  # one "epoch": the fitted head's loss and accuracy, for the learning-curve plot
        for prefix, (ff, yy) in (("", (f_train, y_train)), ("val_", (f_val, val.y))):
            if len(yy):
                p = np.clip(head.predict(ff, verbose=0), 1e-7, 1)
                history[prefix + "loss"] = [float(-np.mean(np.log(p[np.arange(len(yy)), yy])))]
                history[prefix + "accuracy"] = [float(np.mean(p.argmax(1) == yy))]
    else:
        head, history = _fit_dense(cfg, f_train, y_train, n_cls, (f_val, eye[val.y]) if len(val) else None)
    head_s = time.perf_counter() - t1
    head_val = float(np.mean(np.argmax(head.predict(f_val, verbose=0), 1) == val.y)) if len(val) else float("nan")
    log.info("%s head trained on %d feature vectors (%d photos x %d views)%s in %.1f s: validation accuracy %.4f (%d photos)",
             kind, len(f_train), len(train), n_views, f", C {logreg.C:g}" if logreg else "", head_s, head_val, len(val))
    cv = None
    if cfg.cv_repeats > 0 and 2 <= smallest < CV_BELOW:
        t3 = time.perf_counter()
        cv = cross_validate(kind, cfg, f_train, y_train, groups, plain=plain, n_cls=n_cls, C=logreg.C if logreg else None)
        cv["seconds"] = round(time.perf_counter() - t3, 1)
        log.info("%s: %.4f, 95 %% CI %.4f-%.4f (%.0f s)", cv["method"], cv["accuracy"], *cv["ci95"], cv["seconds"])

    model = assemble(backbone, head, f"{cfg.backbone.replace('-', '_')}_classifier")
    tune_s, unfrozen = 0.0, 0
    if cfg.fine_tune > 0:
        t2 = time.perf_counter()
        unfrozen = unfreeze_top(backbone, cfg.fine_tune)
        batch = 32
        steps_ft = math.ceil(len(train) / batch) * cfg.fine_tune_epochs
        model.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.fine_tune_lr, steps_ft)),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy"],
        )
        batches = AugmentedBatches(train.x, eye[train.y], batch, seed=cfg.seed, augment=cfg.augment,
                                   pad=max(2, train.image_shape[0] // 16), dtype="float32")
        log.info("fine-tuning the top %d block(s) of %s (%d layers) for %d epoch(s)", cfg.fine_tune, cfg.backbone, unfrozen, cfg.fine_tune_epochs)
        ft = model.fit(batches, validation_data=(val.x.astype(np.float32), eye[val.y]), epochs=cfg.fine_tune_epochs, verbose=verbose)
        for k, vs in ft.history.items():
            if k != "learning_rate":
                history.setdefault("fine_tune_" + k, []).extend(float(v) for v in vs)
        tune_s = time.perf_counter() - t2
    model.trainable = False
    report = {
        "backbone": cfg.backbone,
        "weights": bb.weights,
        "pretrained": bb.pretrained,
        "head": kind,
        "head_C": logreg.C if logreg else None,
        "head_cv_accuracy": logreg.cv_accuracy if logreg else None,
        "feature_views": n_views,
        "cross_validation": cv,
        "features_seconds": round(features_s, 1),
        "head_seconds": round(head_s, 1),
        "head_val_accuracy": head_val,
        "fine_tune_blocks": cfg.fine_tune,
        "fine_tune_layers": unfrozen,
        "fine_tune_seconds": round(tune_s, 1),
        "history": history,
    }
    return model, report


def train_pretrained(tcfg: TransferConfig, train: Dataset, val: Dataset, out: Path, *, features_hook: FeaturesHook | None = None) -> dict[str, Any]:
    """The transfer recipe, with the same artefacts as the CNN recipes (converter.training.classic.train_model)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, info = train_transfer(tcfg, train, val, verbose=1 if sys.stderr.isatty() else 2, features_hook=features_hook)
    train_seconds = time.perf_counter() - t0
    bs = predict_batch(val.x.shape[1:3], 64)  # a few hundred MB of activations, whatever the photos' size
    chunks = [model.predict(val.x[i : i + 8 * bs].astype(np.float32), batch_size=bs, verbose=0) for i in range(0, len(val.x), 8 * bs)]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(val.classes)), np.float32)
    val_acc = float(np.mean(np.argmax(probs, 1) == val.y))
    history = info.pop("history")
    report = {
        **save_run(out, model, train, val, history, title=f"{tcfg.backbone} head on {train.name}"),
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
