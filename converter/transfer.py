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
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from converter.backbones import Backbone, build_backbone
from converter.data import Dataset, default_cache_dir, prune_cache, touch_cache_entry

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


def _views(x: np.ndarray, augment: bool) -> list[tuple[str, np.ndarray]]:
    return [("plain", x), ("mirror", x[:, :, ::-1])] if augment else [("plain", x)]


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


def train_transfer(cfg: TransferConfig, train: Dataset, val: Dataset, cache_dir: Path | None = None,
                   verbose: int = 2) -> tuple[keras.Model, dict[str, Any]]:
    """Train ``cfg.backbone`` + a head on ``train``; the float32 model and a report (stage times, accuracies)."""
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
    feats, ys = [], []
    for view, xv in _views(train.x, cfg.augment):
        feats.append(compute_features(backbone, xv, tag=f"{tag}-{view}", cache_dir=cache_dir, what=f"training images ({view})"))
        ys.append(train.y)
    f_train, y_train = np.concatenate(feats), np.concatenate(ys)
    f_val = compute_features(backbone, val.x, tag=f"{tag}-plain", cache_dir=cache_dir, what="validation images")
    features_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    head = _head(int(f_train.shape[1]), n_cls, cfg.dropout)
    steps = math.ceil(len(f_train) / cfg.batch_size) * cfg.epochs
    head.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, steps)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    eye = np.eye(n_cls, dtype=np.float32)
    hist = head.fit(f_train, eye[y_train], validation_data=(f_val, eye[val.y]), epochs=cfg.epochs,
                    batch_size=cfg.batch_size, shuffle=True, verbose=0)
    head_s = time.perf_counter() - t1
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items() if k != "learning_rate"}
    head_val = float(np.mean(np.argmax(head.predict(f_val, verbose=0), 1) == val.y))
    log.info("head trained on %d feature vectors in %.1f s: validation accuracy %.4f", len(f_train), head_s, head_val)

    model = assemble(backbone, head, f"{cfg.backbone.replace('-', '_')}_classifier")
    tune_s, unfrozen = 0.0, 0
    if cfg.fine_tune > 0:
        from converter.train import augment_batch  # noqa: PLC0415 - one augmentation for every recipe (train imports this module)

        t2 = time.perf_counter()
        unfrozen = unfreeze_top(backbone, cfg.fine_tune)
        batch = 32
        steps_ft = math.ceil(len(train) / batch) * cfg.fine_tune_epochs
        model.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.fine_tune_lr, steps_ft)),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy"],
        )
        rng = np.random.default_rng(cfg.seed)
        pad = max(2, train.image_shape[0] // 16)

        class Augmented(keras.utils.PyDataset):
            def __init__(self) -> None:
                super().__init__()
                self.on_epoch_end()

            def __len__(self) -> int:
                return math.ceil(len(train) / batch)

            def on_epoch_end(self) -> None:
                self.order = rng.permutation(len(train))

            def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
                idx = self.order[i * batch : (i + 1) * batch]
                x = augment_batch(train.x[idx], rng, pad=pad) if cfg.augment else train.x[idx]
                return x.astype(np.float32), eye[train.y[idx]]

        log.info("fine-tuning the top %d block(s) of %s (%d layers) for %d epoch(s)", cfg.fine_tune, cfg.backbone, unfrozen, cfg.fine_tune_epochs)
        ft = model.fit(Augmented(), validation_data=(val.x.astype(np.float32), eye[val.y]), epochs=cfg.fine_tune_epochs, verbose=verbose)
        for k, vs in ft.history.items():
            if k != "learning_rate":
                history.setdefault("fine_tune_" + k, []).extend(float(v) for v in vs)
        tune_s = time.perf_counter() - t2
    model.trainable = False
    report = {
        "backbone": cfg.backbone,
        "weights": bb.weights,
        "pretrained": bb.pretrained,
        "feature_views": len(_views(train.x[:1], cfg.augment)),
        "features_seconds": round(features_s, 1),
        "head_seconds": round(head_s, 1),
        "head_val_accuracy": head_val,
        "fine_tune_blocks": cfg.fine_tune,
        "fine_tune_layers": unfrozen,
        "fine_tune_seconds": round(tune_s, 1),
        "history": history,
    }
    return model, report
