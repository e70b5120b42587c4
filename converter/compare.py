"""``compare-models``: classical machine learning versus the CNNs, on one held-out split.

``compare-models --data cifar10-train.tar.gz --out reports/cifar10`` fits every hand-crafted
feature (:mod:`converter.features`) with every scikit-learn classifier (:mod:`converter.baselines`),
trains (or reuses, ``--paper-model``/``--edge-model``) the paper CNN and the edge CNN, converts
them to int8, and scores everything on the same held-out images. It writes ``results.json``,
``report.md`` (generated from the JSON), ``accuracy.png`` and, for each CNN, a confusion matrix
and a grid of its most confident mistakes. ``--quick`` runs a small subsample in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converter.baselines import DEFAULT_CLASSIFIERS, parse_classifiers, run_baselines
from converter.cli_common import add_common_flags, run_cli
from converter.data import Dataset, check_same_classes, load_dataset, parse_size, stratified_sample, train_val
from converter.errors import ConverterError, DataError, ModelError
from converter.failures import FailureAnalysis, analyse, plot_confusion, plot_mistakes
from converter.features import DEFAULT_FEATURES, parse_features
from converter.report import MethodResult, method_dicts, per_class_accuracy, plot_comparison, results_document, write_markdown, write_results
from edge_app.argparsing import StrictParser

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
    the validation split carved by :func:`converter.data.train_val` (as ``train-model`` carves it,
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
    from converter.train import TrainConfig, train_model  # noqa: PLC0415 - imports TensorFlow

    cfg = TrainConfig(arch=arch, epochs=epochs, seed=seed, augment=augment)
    log.info("training the %s for %d epochs into %s", ARCH_LABELS[arch], epochs, work / arch)
    report = train_model(cfg, splits.train, splits.val, work / arch)
    details = {k: report[k] for k in ("best_epoch", "val_accuracy", "params", "macs", "precision", "config")}
    details["augmented"] = cfg.augments()
    return CnnModel(work / arch / "model.keras", float(report["train_seconds"]), len(splits.train), details, [])


def cnn_results(cnn: CnnModel, arch: str, splits: Splits, work: Path, *, int8: bool, calibration: int, seed: int) -> list[tuple[MethodResult, np.ndarray]]:
    """Score the float model (Keras) and, with ``int8``, its full-integer TFLite conversion."""
    import keras  # noqa: PLC0415

    from converter.evaluate import keras_predict, tflite_predict  # noqa: PLC0415
    from converter.quantize import quantize_model  # noqa: PLC0415

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


def compare(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run the comparison described by the parsed command line; returns the results document."""
    methods = parse_methods(args.methods)
    features = [f.name for f in parse_features(args.features)] if "classical" in methods else []
    classifiers = parse_classifiers(args.classifiers) if "classical" in methods else []
    q = args.quick
    limit_train = args.limit_per_class or (QUICK["limit_per_class"] if q else None)
    limit_eval = args.eval_limit_per_class or (QUICK["eval_limit_per_class"] if q else None)
    epochs = {
        "paper": args.epochs_paper or (QUICK["epochs"] if q else DEFAULT_EPOCHS["paper"]),
        "edge": args.epochs_edge or (QUICK["epochs"] if q else DEFAULT_EPOCHS["edge"]),
    }
    if min(epochs.values()) < 1:
        raise ConverterError("--epochs-paper and --epochs-edge must be at least 1")
    calibration = args.calibration or (QUICK["calibration"] if q else 300)
    reuse = {"paper": args.paper_model, "edge": args.edge_model}
    for arch, path in reuse.items():  # fail before the long classical part, not after it
        if path is not None and arch in methods and not path.is_file():
            raise ModelError(f"--{arch}-model {path} not found; pass the model.keras written by train-model")

    out: Path = args.out
    work: Path = args.work_dir or Path("runs") / f"compare-{out.resolve().name}"
    out.mkdir(parents=True, exist_ok=True)  # the work folder is made only when a CNN is trained or converted

    splits = load_splits(args.data, parse_size(args.image_size), args.eval_split, args.val_fraction, args.seed)
    full_train = len(splits.train)
    same = splits.val is splits.held_out
    splits.train = limit(splits.train, limit_train, args.seed)
    splits.held_out = limit(splits.held_out, limit_eval, args.seed)
    splits.val = splits.held_out if same else limit(splits.val, limit_eval, args.seed)
    notes = list(splits.notes)
    if len(splits.train) < full_train:
        notes.append(f"Training on a stratified subsample: {len(splits.train):,} of {full_train:,} images.")
    log.info(
        "%s: %d classes, %s images; training on %d, scoring on %d (%s)",
        splits.train.name, len(splits.train.classes), "x".join(map(str, splits.train.image_shape)),
        len(splits.train), len(splits.held_out), splits.description,
    )
    results = results_document(
        dataset=splits.train.name,
        data=str(args.data),
        classes=splits.train.classes,
        image_shape=splits.train.image_shape,
        train_images=len(splits.train),
        eval_images=len(splits.held_out),
        eval_split=splits.description,
        command=command,
        quick=q,
        seed=args.seed,
        notes=notes,
    )
    done: list[MethodResult] = []
    previous = out / "results.json"
    if args.merge and previous.exists():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError) as exc:
            raise ConverterError(f"--merge: cannot read {previous}: {exc}; delete it or run without --merge") from exc
        if old.get("dataset") != results["dataset"] or old.get("eval_images") != results["eval_images"]:
            raise ConverterError(f"--merge: {previous} was scored on other data ({old.get('dataset')}, {old.get('eval_images')} images); use another --out")
        done.extend(MethodResult.from_dict(m) for m in old.get("methods", []))
        results["failure_analysis"] = list(old.get("failure_analysis", []))
        results["commands"] = [*old.get("commands", [old.get("command")]), command]
        log.info("--merge: keeping %d method(s) from %s", len(done), previous)

    def record(r: MethodResult) -> None:
        done[:] = [m for m in done if m.key != r.key]
        done.append(r)
        results["methods"] = method_dicts(done)
        write_results(results, out)  # partial results survive an interrupted run
        write_markdown(results, out)

    if features:
        for r, _pred in run_baselines(features, classifiers, splits.train, splits.held_out, seed=args.seed, n_jobs=args.jobs):
            record(r)
    for arch in ("paper", "edge"):
        if arch not in methods:
            continue
        work.mkdir(parents=True, exist_ok=True)
        cnn = reuse_cnn(reuse[arch], splits) if reuse[arch] else train_cnn(arch, epochs[arch], splits, work, args.seed, augment=args.augment)
        for r, probs in cnn_results(cnn, arch, splits, work, int8=not args.no_int8, calibration=calibration, seed=args.seed):
            record(r)
            if r.key.endswith("/float"):
                fa = analyse(splits.held_out.y, probs, splits.held_out.classes, image_shape=splits.held_out.image_shape, method_key=r.key, method_name=r.name)
                kept = [f for f in results["failure_analysis"] if f.get("method") != r.key]
                results["failure_analysis"] = [*kept, write_failure_analysis(fa, splits.held_out.x, out, arch)]
    if not done:
        raise ConverterError("nothing to compare: --methods selected no method")
    results["chart"] = plot_comparison(done, out / "accuracy.png", title=f"{splits.train.name}: held-out accuracy and inference time").name
    write_results(results, out)
    write_markdown(results, out)
    log.info("wrote %s (report.md, results.json, accuracy.png)", out)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(
        prog="compare-models",
        description="Compare hand-crafted features + scikit-learn classifiers with the paper CNN and the edge CNN (float and int8) on one held-out split.",
    )
    p.add_argument("--data", required=True, help="cifar10, fashion-mnist, or a class-per-folder folder / .tar.gz / .zip")
    p.add_argument("--out", type=Path, required=True, help="report folder, e.g. reports/cifar10")
    quick = f"smoke run: {QUICK['limit_per_class']} training and {QUICK['eval_limit_per_class']} held-out images per class, {QUICK['epochs']} epochs"
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--image-size", help="resize images to N or HxW (needed when sizes differ, e.g. 96 for dogs-vs-cats)")
    p.add_argument("--methods", default=",".join(METHOD_GROUPS), help=f"comma list of {', '.join(METHOD_GROUPS)} (default: all)")
    p.add_argument("--features", default=",".join(DEFAULT_FEATURES), help="classical features, comma list (a+b concatenates): hog, lbp, lbp-global, color, raw")
    p.add_argument("--classifiers", default=",".join(DEFAULT_CLASSIFIERS), help="classical classifiers, comma list: " + ", ".join(DEFAULT_CLASSIFIERS))
    p.add_argument("--epochs-paper", type=int, help=f"paper CNN epochs (default {DEFAULT_EPOCHS['paper']}, quick {QUICK['epochs']})")
    p.add_argument("--epochs-edge", type=int, help=f"edge CNN epochs (default {DEFAULT_EPOCHS['edge']}, quick {QUICK['epochs']})")
    p.add_argument("--paper-model", type=Path, help="reuse this paper-CNN model.keras (from train-model) instead of training")
    p.add_argument("--edge-model", type=Path, help="reuse this edge-CNN model.keras (from train-model) instead of training")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="augment both CNNs' training images (default: edge only, the paper's recipe has none)")
    p.add_argument("--merge", action="store_true", help="keep the methods already in OUT/results.json that this run does not redo")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 TFLite conversion of the CNNs")
    p.add_argument("--calibration", type=int, help="int8 calibration images (default 300, quick 100)")
    p.add_argument("--limit-per-class", type=int, help="train on at most N images of each class")
    p.add_argument("--eval-limit-per-class", type=int, help="score on at most N held-out images of each class")
    p.add_argument(
        "--eval-split", choices=["auto", "test", "val"], default="auto",
        help="held-out images: the data's test split (auto: when it has one) or the carved validation split",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction carved from the training split (default 0.1, as train-model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=-1, help="worker processes for feature extraction (default: all cores)")
    p.add_argument("--work-dir", type=Path, help="where trained CNNs and .tflite files go (default runs/compare-<out name>)")
    add_common_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = shlex.join(["compare-models", *argv])

    def body(a: argparse.Namespace) -> int:
        results = compare(a, command)
        best = max(results["methods"], key=lambda m: m["accuracy"])
        print(f"{len(results['methods'])} methods; best {best['name']} {100 * best['accuracy']:.2f} %; report: {a.out / 'report.md'}")
        return 0

    return run_cli("compare-models", body, args)


if __name__ == "__main__":
    sys.exit(main())
