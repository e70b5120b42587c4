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

import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from converter.data.augment import augmented_view
from converter.data.batches import AugmentedBatches
from converter.data.datasets import BATCH, Dataset, Rows, default_cache_dir, prune_cache, touch_cache_entry
from converter.evaluation.cross_validation import SMALL_CLASS
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
CV_BELOW = SMALL_CLASS  # photos in the smallest class below which the report scores the head by repeated k-fold cross-validation
MAX_VIEWS = 32
FeaturesHook = Callable[[np.ndarray, np.ndarray], object]  # (training features, validation features), plain view, a row a photo


def auto_views(cfg: TransferConfig, photos: int, smallest_class: int) -> int:
    """Feature views a photo: ``cfg.views`` when given, else plain + mirror (1 without augmentation).

    More views (random resized crops with colour jitter) were measured on 20 photos a class (benchmarks/few_photos.py,
    5 draws): 10 views moved the logistic head by +0.4 points on dogs-vs-cats and -0.8 on five CIFAR-10 classes, within
    the draws' spread, so they are not the default; ``--views N`` keeps them at hand. Remeasured with 10 draws
    (benchmarks/fewshot_study.py, reports/few-photos/study/): 6 views +0.06 points (paired 95 % CI +-0.16), the plain
    view alone -0.06 (+-0.11) on dogs-vs-cats: the mirror is kept as it costs seconds, crops are not.
    """
    del photos, smallest_class  # the measured choice does not depend on them (yet)
    if cfg.views is not None:
        return max(1, cfg.views)
    return 2 if cfg.augment else 1


Images = Dataset | Rows  # photos in memory, or rows read a bounded batch at a time from the memory-mapped dataset cache


@dataclass(frozen=True)
class View:
    """One view of a set of photos (plain, mirror, a crop draw) read a bounded batch at a time: ``batches(size)`` starts a
    fresh pass over the photos in order, so neither the features nor their cache key need the whole view in memory."""

    name: str
    shape: tuple[int, ...]  # the whole view's (N, H, W, C)
    batches: Callable[[int], Iterator[np.ndarray]]
    dtype: str = "uint8"

    @staticmethod
    def of(x: np.ndarray, name: str = "plain") -> View:
        """An array as a view: its batches are slices of it."""
        return View(name, tuple(int(n) for n in x.shape), lambda size: (x[i : i + size] for i in range(0, len(x), size)), str(x.dtype))


def _plain(images: Images) -> View:
    return View("plain", (len(images), *images.image_shape), images.batches)


def _in_memory(images: Images) -> np.ndarray:
    """Every photo as one array (``Rows`` read into memory): for the stages that need them all at once."""
    return images.x if isinstance(images, Dataset) else images.take(np.arange(len(images)))


def _views(images: Images, augment: bool, n: int | None = None, seed: int = 0) -> list[View]:
    """The training photos as ``n`` views, each read a batch at a time: plain, mirror, then ``augmented_view`` draws (``n``
    None: 2 or 1). The draws take one random stream through the photos and the views in order (the same pixels as when
    each view was built whole): a draw starts where the previous one's first full pass left the stream."""
    n = (2 if augment else 1) if n is None else n
    plain = _plain(images)
    out = [plain, View("mirror", plain.shape, lambda size: (b[:, :, ::-1] for b in images.batches(size)))][:n]
    starts = [np.random.default_rng(seed).bit_generator.state]  # the stream's state where draw k starts

    def draw(k: int, size: int) -> Iterator[np.ndarray]:
        while len(starts) <= k:  # an earlier draw not read through yet: run it to learn where draw k starts
            for _ in draw(len(starts) - 1, BATCH):
                pass
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = starts[k]
        for b in images.batches(size):
            yield np.stack([augmented_view(img, rng) for img in b])
        if len(starts) == k + 1:
            starts.append(rng.bit_generator.state)

    for k in range(n - 2):
        out.append(View(f"crop{k + 1}-s{seed}", plain.shape, functools.partial(draw, k)))
    return out


def _view_digest(view: View) -> str:
    """The digest of the view's pixels, read a batch at a time: the same as of the whole view as one array (the cache key)."""
    h = hashlib.sha256()
    h.update(f"{view.shape}|{view.dtype}".encode())
    for b in view.batches(BATCH):
        h.update(np.ascontiguousarray(b).data)
    return h.hexdigest()[:20]


def _array_digest(x: np.ndarray) -> str:
    return _view_digest(View.of(x))


def compute_features(
    model: keras.Model, x: np.ndarray | View, *, tag: str, cache_dir: Path | None = None, batch: int = 32, what: str = "images"
) -> np.ndarray:
    """``model``'s outputs for the images ``x`` (an array, or a :class:`View` read a batch at a time), computed once: cached
    under ``cache_dir`` by ``tag`` and the pixels' digest (the same for an array and for its rows read in batches)."""
    view = x if isinstance(x, View) else View.of(x)
    n = int(view.shape[0])
    cache = (cache_dir or default_cache_dir()) / "features" / f"{tag}-{_view_digest(view)}.npy"
    if cache.is_file():
        try:
            feats = np.load(cache, allow_pickle=False)
            if len(feats) == n:
                log.info("features of %d %s from cache %s", n, what, cache)
                touch_cache_entry(cache)
                return feats
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable feature cache %s (%s)", cache, exc)
    batch = predict_batch(view.shape[1:3], batch)  # 32 for small images, 10 at 224 px: the activations stay bounded
    out: list[np.ndarray] = []
    bar = keras.utils.Progbar(n, unit_name="image") if sys.stderr.isatty() else None
    t0, last_log, done = time.perf_counter(), 0.0, 0
    chunk = batch * 8  # predict() compiles the graph once: twice the speed of calling the model eagerly
    for xb in view.batches(chunk):  # one chunk of photos (and its float32 copy) in memory at a time
        out.append(np.asarray(model.predict(xb.astype(np.float32), batch_size=batch, verbose=0), np.float32))
        done += len(xb)
        if bar is not None:
            bar.update(done)
        elif time.perf_counter() - last_log > 10 or done == n:
            last_log = time.perf_counter()
            log.info("features: %d/%d %s (%.1f per second)", done, n, what, done / max(1e-9, last_log - t0))
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

    Nested for the logistic head: each outer training fold chooses its own C (``fit_logreg``'s grouped k-fold over
    ``LOGREG_CS``, on that fold's photos only), so the held-out photos never helped choose the C they are scored with;
    ``fold_C`` lists the choices, ``C_all_photos`` is ``C``, the one the shipped head was fitted with (all photos).
    """
    from converter.training.heads import LOGREG_CS  # noqa: PLC0415 - kept inside: other engineers own the module's imports

    # every other value of the grid (a decade apart, both ends kept): 5 folds x 3 repeats x (6 x 5 + 1) fits; on 100 photos
    # x 2 views of 5 CIFAR-10 classes 60 s on 2 cores at load 8 (the full 11-value grid: 120 s), 2026-12-07
    grid = LOGREG_CS[::2]
    chosen: list[float] = []

    def fit_predict(a: np.ndarray, b: np.ndarray, r: int) -> np.ndarray:
        if kind == "logreg":
            fit = fit_logreg(f[a], y[a], groups[a], n_cls, seed=cfg.seed + r, Cs=grid, score_views=plain[a])
            chosen.append(fit.C)
            return fit.predict(f[b])
        keras.utils.set_random_seed(cfg.seed + r)
        head, _ = _fit_dense(cfg, f[a], y[a], n_cls, None)
        return np.argmax(head.predict(f[b], verbose=0), 1)

    repeats = cfg.cv_repeats if kind == "logreg" else 1  # a dense head takes seconds a fold; the logistic one well under one
    what = f"the {kind} head" + (f" (nested: C re-chosen in each training fold from {len(grid)} values, a decade apart, by an inner grouped "
                                 "k-fold)" if kind == "logreg" else "")
    cv = repeated_kfold(fit_predict, y, groups, plain=plain, n_cls=n_cls, repeats=repeats, seed=cfg.seed, what=what)
    if kind == "logreg":
        cv.update(nested=True, fold_C=[float(f"{c:.4g}") for c in chosen], C_grid=[float(f"{c:.4g}") for c in grid], C_all_photos=C)
    return cv


def train_transfer(cfg: TransferConfig, train: Images, val: Images, cache_dir: Path | None = None,
                   verbose: int = 2, *, features_hook: FeaturesHook | None = None) -> tuple[keras.Model, dict[str, Any]]:
    """Train ``cfg.backbone`` + a head on ``train``; the float32 model and a report (stage times, accuracies).

    ``train`` and ``val`` may be :class:`Rows`: the features of each view are computed from bounded batches of photos
    (the fast stage never holds a decoded set), with the same features and cache keys as for the photos in memory. Only
    fine-tuning (``cfg.fine_tune``) loads the training and validation photos into memory: it reads every photo each epoch.

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
    for v in _views(train, cfg.augment, n_views, cfg.seed):
        feats.append(compute_features(backbone, v, tag=f"{tag}-{v.name}", cache_dir=cache_dir, what=f"training images ({v.name})"))
        ys.append(train.y)
    f_train, y_train = np.concatenate(feats), np.concatenate(ys)
    groups = np.tile(np.arange(len(train)), n_views)  # the photo each feature vector came from
    plain = np.repeat(np.arange(n_views) == 0, len(train))
    f_val = compute_features(backbone, _plain(val), tag=f"{tag}-plain", cache_dir=cache_dir, what="validation images")
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
        train_x, val_x = _in_memory(train), _in_memory(val)  # fine-tuning shuffles and augments every photo each epoch
        batches = AugmentedBatches(train_x, eye[train.y], batch, seed=cfg.seed, augment=cfg.augment,
                                   pad=max(2, train.image_shape[0] // 16), dtype="float32")
        log.info("fine-tuning the top %d block(s) of %s (%d layers) for %d epoch(s)", cfg.fine_tune, cfg.backbone, unfrozen, cfg.fine_tune_epochs)
        ft = model.fit(batches, validation_data=(val_x.astype(np.float32), eye[val.y]), epochs=cfg.fine_tune_epochs, verbose=verbose)
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


def train_pretrained(tcfg: TransferConfig, train: Images, val: Images, out: Path, *, features_hook: FeaturesHook | None = None) -> dict[str, Any]:
    """The transfer recipe, with the same artefacts as the CNN recipes (converter.training.classic.train_model).

    With :class:`Rows` (``retrain-model``) the photos are read in bounded batches: the features of each view, then the
    validation predictions; only ``--fine-tune`` loads them all (:func:`train_transfer`)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, info = train_transfer(tcfg, train, val, verbose=1 if sys.stderr.isatty() else 2, features_hook=features_hook)
    train_seconds = time.perf_counter() - t0
    bs = predict_batch(val.image_shape[:2], 64)  # a few hundred MB of activations, whatever the photos' size
    chunks = [model.predict(x.astype(np.float32), batch_size=bs, verbose=0) for x in val.batches(8 * bs)]
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
