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
    head: str = "auto"  # auto: logreg below SMALL_SET photos a class, else dense; dense: the trained softmax head; logreg
    views: int | None = None  # feature views a training photo (None: plain + mirror, 1 without --augment; more: crops)
    cv_repeats: int = 3  # repeated stratified k-fold scoring of small sets (0: off)


HEADS = ("auto", "dense", "logreg")
SMALL_SET = 100  # photos in the smallest class below which --head auto picks logreg
CV_BELOW = 50  # photos in the smallest class below which the report scores the head by repeated k-fold cross-validation
MAX_VIEWS = 32
LOGREG_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))


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


def augmented_view(img: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.35, 1.0),
                   jitter: float = 0.2) -> np.ndarray:
    """A random resized crop (``scale`` of the area, aspect 3/4-4/3) at the image's size, flipped half the time,
    brightness, contrast and saturation each scaled by up to ``jitter``."""
    import cv2  # noqa: PLC0415 - data.py's dependency; only this path needs it here

    h, w = img.shape[:2]
    cw, ch = w, h
    for _ in range(10):
        area = rng.uniform(*scale) * h * w
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        tw, th = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < tw <= w and 0 < th <= h:
            cw, ch = tw, th
            break
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if out.ndim == 2:
        out = out[:, :, None]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if jitter:
        bright, contrast, sat = 1 + rng.uniform(-jitter, jitter, 3)
        grey = out.mean(2, keepdims=True)
        out = grey + (out - grey) * sat
        mean = out.mean()
        out = ((out - mean) * contrast + mean) * bright
    return np.clip(out, 0, 255).astype(np.uint8)


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


@dataclass
class LinearFit:
    """A multinomial logistic regression on standardised features, as the weights of one softmax Dense layer."""

    kernel: np.ndarray  # (features, classes), the standardisation folded in
    bias: np.ndarray  # (classes,)
    C: float
    cv_accuracy: float | None  # the internal cross-validation score C was chosen by (None: C given)

    def predict(self, f: np.ndarray) -> np.ndarray:
        return np.argmax(f @ self.kernel + self.bias, 1)


def _group_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over the photos (``groups``): every view of a photo on the same side of each split."""
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415 - scikit-learn only for this head

    photos = np.unique(groups)
    label = np.array([y[np.flatnonzero(groups == g)[0]] for g in photos])
    folds = []
    for a, b in StratifiedKFold(k, shuffle=True, random_state=seed).split(photos, label):
        folds.append((np.flatnonzero(np.isin(groups, photos[a])), np.flatnonzero(np.isin(groups, photos[b]))))
    return folds


def fit_logreg(f: np.ndarray, y: np.ndarray, groups: np.ndarray, n_cls: int, *, seed: int = 0, C: float | None = None,
               Cs: tuple[float, ...] = LOGREG_CS, score_views: np.ndarray | None = None) -> LinearFit:
    """Strongly regularised, class-balanced logistic regression on standardised features; C by grouped k-fold
    cross-validation (scored on ``score_views``, the plain views, when given) unless ``C`` is given."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    mu, sd = f.mean(0), f.std(0)
    sd = sd + 0.1 * float(np.median(sd)) + 1e-6  # a floor: near-constant features would get huge int8-unfriendly weights
    z = (f - mu) / sd
    present = np.unique(y)

    def fit(zz: np.ndarray, yy: np.ndarray, c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=500, tol=1e-3).fit(zz, yy)

    cv_acc = None
    if C is None:
        smallest = min(len(np.unique(groups[y == c])) for c in present)
        k = min(5, smallest)
        if k < 2 or len(present) < 2:
            C = 0.01
        else:
            folds = _group_folds(y, groups, k, seed)
            best = (-1.0, -np.inf)
            for c in Cs:
                right = total = 0
                nll = 0.0
                for a, held in folds:
                    b = held[score_views[held]] if score_views is not None else held
                    m = fit(z[a], y[a], c)
                    p = m.predict_proba(z[b])
                    col = np.searchsorted(m.classes_, y[b])
                    right += int(np.sum(m.classes_[p.argmax(1)] == y[b]))
                    nll += float(np.sum(np.log(p[np.arange(len(b)), col] + 1e-12)))
                    total += len(b)
                key = (right / total, nll / total)  # accuracy first, then the likelihood breaks ties
                if key > best:
                    best, C = key, c
            cv_acc = best[0]
    assert C is not None  # given, or chosen above
    m = fit(z, y, float(C))
    coef = np.zeros((n_cls, f.shape[1]), np.float64)
    bias = np.zeros(n_cls, np.float64)
    if len(m.classes_) == 2 and m.coef_.shape[0] == 1:  # binary: logits (-z/2, z/2) give the same probabilities
        coef[m.classes_[0]], coef[m.classes_[1]] = -m.coef_[0] / 2, m.coef_[0] / 2
        bias[m.classes_[0]], bias[m.classes_[1]] = -m.intercept_[0] / 2, m.intercept_[0] / 2
    else:
        coef[m.classes_], bias[m.classes_] = m.coef_, m.intercept_
    missing = np.setdiff1d(np.arange(n_cls), m.classes_)
    bias[missing] = -1e3  # a class without photos is never predicted
    kernel = (coef / sd).T
    return LinearFit(kernel.astype(np.float32), (bias - coef @ (mu / sd)).astype(np.float32), float(C), cv_acc)


def _linear_head(fit: LinearFit) -> keras.Model:
    inputs = keras.Input((fit.kernel.shape[0],), name="features")
    dense = layers.Dense(fit.kernel.shape[1], activation="softmax", name="classifier")
    head = keras.Model(inputs, dense(inputs), name="head")
    dense.set_weights([fit.kernel, fit.bias])
    return head


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


def wilson(right: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``right / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cross_validate(kind: str, cfg: TransferConfig, f: np.ndarray, y: np.ndarray, groups: np.ndarray, *, plain: np.ndarray,
                   n_cls: int, C: float | None) -> dict[str, Any]:
    """Repeated stratified k-fold accuracy of the ``kind`` head on the cached features of the training photos.

    Every view of a photo stays on one side of each split; held-out photos are scored on their plain view. The 95 %
    interval is Wilson's for the mean accuracy over the photos (each photo is scored once a repeat, so the photos,
    not the repeats, are the sample). The logistic head keeps the C chosen on all photos (not re-chosen per fold).
    """
    photos = int(plain.sum())
    label = y[plain]
    k = int(min(5, np.bincount(label, minlength=n_cls)[np.bincount(label, minlength=n_cls) > 0].min()))
    accs = []
    repeats = cfg.cv_repeats if kind == "logreg" else 1  # a dense head takes seconds a fold; the logistic one milliseconds
    for r in range(repeats):
        right = 0
        for a, held in _group_folds(y, groups, k, cfg.seed + r):
            b = held[plain[held]]
            if kind == "logreg":
                pred = fit_logreg(f[a], y[a], groups[a], n_cls, C=C).predict(f[b])
            else:
                keras.utils.set_random_seed(cfg.seed + r)
                head, _ = _fit_dense(cfg, f[a], y[a], n_cls, None)
                pred = np.argmax(head.predict(f[b], verbose=0), 1)
            right += int(np.sum(pred == y[b]))
        accs.append(right / photos)
    mean = float(np.mean(accs))
    lo, hi = wilson(mean * photos, photos)
    return {
        "method": f"repeated stratified {k}-fold cross-validation ({repeats} repeat{'s' * (repeats > 1)}) of the {kind} head on the training photos",
        "accuracy": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)], "ci": "Wilson score interval over the photos",
        "folds": k, "repeats": repeats, "photos": photos, "repeat_accuracy": [round(a, 4) for a in accs],
    }


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

    t1 = time.perf_counter()
    eye = np.eye(n_cls, dtype=np.float32)
    logreg: LinearFit | None = None
    if kind == "logreg":
        logreg = fit_logreg(f_train, y_train, groups, n_cls, seed=cfg.seed, score_views=plain)
        head = _linear_head(logreg)
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
