"""``retrain-model DIR``: from the frames collected and labelled on the device to a candidate bundle, in one command.

``DIR`` is an ``edge-app --collect DIR`` folder whose ``train/<class>/`` the review page filled. The command
trains with the pretrained fast path (``train-model``'s default for photos), converts to int8 with the usual
float-vs-int8 check, evaluates the int8 model on the held-out carve (accuracy, per-class recall) and, with
``--current BUNDLE``, how often the candidate disagrees with the model running now on those same images. It
writes ``DIR/candidate/`` (a bundle) with ``retrain_report.json``, which the review page shows before anyone
deploys it (copy the bundle over the live model folder, then ``systemctl reload edge-app`` or
``POST /api/reload``: a bundle that fails to load is refused and the old one keeps running).

Runs on the workstation, or on the device where the ``[workstation,pretrained]`` extras install (a Pi 5 runs
TensorFlow). The photos are read from the dataset cache in bounded batches (``Rows``), never all decoded in memory at
once: the training features view by view, the validation predictions, the conversion, the evaluation and the comparison.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import BATCH, Rows, load_folder, stratified_split
from converter.errors import DataError
from converter.evaluation.evaluate import TFLiteRunner
from edge_app.preprocess import fit_to_size

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
REPORT = "retrain_report.json"


def predict_rows(runner: TFLiteRunner, rows: Rows, batch: int = BATCH) -> np.ndarray:
    """``runner``'s top-1 on ``rows``, read ``batch`` images at a time (resized to its input when they differ)."""
    h, w, _ = runner.input_shape
    out = [np.zeros(0, np.int64)]
    for x in rows.batches(batch):
        fitted = np.stack([fit_to_size(img, (h, w)) for img in x]) if x.shape[1:3] != (h, w) else x
        out.append(np.argmax(runner.predict(fitted), 1))
    return np.concatenate(out)


def disagreement(current: Path, val: Rows, val_classes: tuple[str, ...], candidate_pred: np.ndarray) -> dict[str, Any]:
    """How often the current bundle's top label differs from the candidate's, on the same held-out images."""
    runner = TFLiteRunner(current)
    labels = list(runner.labels or [])
    now = [labels[i] if i < len(labels) else str(i) for i in predict_rows(runner, val)]
    new = [val_classes[i] for i in candidate_pred]
    differ = float(np.mean([a != b for a, b in zip(now, new, strict=True)]))
    return {"model": str(current), "labels": labels, "disagreement": round(differ, 4), "images": len(new),
            "new_classes": sorted(set(val_classes) - set(labels)), "dropped_classes": sorted(set(labels) - set(val_classes))}


def retrain(root: Path, *, current: Path | None, arch: str = "efficientnet-lite0", image_size: tuple[int, int] | None = None,
            val_fraction: float = 0.2, seed: int = 0, epochs: int | None = None) -> dict[str, Any]:
    train_dir = root / "train"
    if not train_dir.is_dir():  # before TensorFlow is imported: a mistyped folder answers at once
        raise DataError(f"{train_dir} does not exist: label collected frames first (edge-app review {root}), or pass a --collect folder")
    from converter.evaluation.doctor import TrainDoctor  # noqa: PLC0415
    from converter.export.convert import convert_model  # noqa: PLC0415
    from converter.models.backbones import default_size  # noqa: PLC0415
    from converter.training.transfer import TransferConfig, train_pretrained  # noqa: PLC0415

    size = image_size or (default_size(arch), default_size(arch))
    doctor = TrainDoctor(root, size)  # the collect folder: findings name train/<class>/<file>, warnings only
    doctor.check_files()
    full = load_folder(train_dir, "train", image_size=size)
    counts = full.counts()
    few = {c: n for c, n in counts.items() if n < 2}
    if few:
        raise DataError(f"every class needs at least 2 labelled images (one to train, one to check); too few: {few}")
    ti, vi = stratified_split(full.y, val_fraction, seed)
    train, val = full.rows(ti), full.rows(vi)  # read in batches from the memory-mapped photos after training
    t0 = time.perf_counter()
    run = root / ".retrain-run"
    tcfg = TransferConfig(backbone=arch, seed=seed, epochs=epochs or TransferConfig.epochs)
    hook = doctor.hook(val_fraction=val_fraction, seed=seed, limit_per_class=None, train_y=train.y, val_y=val.y)
    report = train_pretrained(tcfg, train, val, run, features_hook=hook)  # features from bounded batches of photos
    out = root / CANDIDATE
    if out.exists():
        shutil.rmtree(out)
    # a candidate is always written: its int8 check is recorded in its manifest, and review compares it with the running model
    res = convert_model(run / "model.keras", train, val, out, calib_images=min(300, len(train)), allow_drop=True, seed=seed)
    pred = predict_rows(TFLiteRunner(out), val)
    recall = {c: round(float(np.mean(pred[val.y == i] == i)), 4) for i, c in enumerate(val.classes)}
    n = len(val.classes)
    confusion = [[int(np.sum((val.y == i) & (pred == j))) for j in range(n)] for i in range(n)]  # rows: true class
    result: dict[str, Any] = {
        "candidate": str(out),
        "classes": list(val.classes),
        "train_images": counts,
        "val_images": len(val),
        "val_accuracy": {"float": res.manifest["accuracy"]["float"], "int8": round(float(np.mean(pred == val.y)), 4)},
        "recall": recall,
        "confusion": confusion,
        "train_seconds": report["train_seconds"],
        "total_seconds": round(time.perf_counter() - t0, 1),
        "arch": arch,
        "dataset_findings": doctor.to_json(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if current is not None:
        result["current"] = disagreement(current, val, val.classes, pred)
    (out / REPORT).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(run, ignore_errors=True)
    log.info("candidate %s: int8 validation accuracy %.4f on %d images%s", out, result["val_accuracy"]["int8"], len(val),
             f", disagrees with {current} on {result['current']['disagreement']:.1%}" if current is not None else "")
    return result
