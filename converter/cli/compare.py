"""``compare-models``: the paper's comparison, classical baselines against the CNNs on one held-out split (``python -m converter.cli.compare``)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from converter.classical.baselines import DEFAULT_CLASSIFIERS, parse_classifiers, run_baselines
from converter.classical.compare import (
    DEFAULT_EPOCHS,
    METHOD_GROUPS,
    QUICK,
    cnn_results,
    limit,
    load_splits,
    parse_methods,
    reuse_cnn,
    train_cnn,
    write_failure_analysis,
)
from converter.classical.features import DEFAULT_FEATURES, parse_features
from converter.cli.common import add_common_flags, run_cli
from converter.data.datasets import parse_size
from converter.errors import ConverterError, ModelError
from converter.evaluation.failures import analyse
from converter.evaluation.report import MethodResult, method_dicts, plot_comparison, results_document, write_markdown, write_results
from edge_app.argparsing import StrictParser

log = logging.getLogger(__name__)


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
