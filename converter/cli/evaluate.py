"""``evaluate-model``: accuracy, per-class precision/recall, confusion matrix and latency of a model (``python -m converter.cli.evaluate``).

The accuracy comes with its 95 % Wilson interval and the number of images, a ``small set: ±x points`` line when some class
has fewer than 50 images, and the model's training score and how train-model obtained it (cross-validation or its carve),
read from the bundle's ``manifest.json`` or the ``train_report.json`` beside a ``.keras`` model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from converter.cli.common import add_cache_flag, add_common_flags, run_cli
from converter.data.datasets import Dataset, parse_size, resize_batch, stratified_sample
from converter.errors import MixedSizesError
from converter.evaluation.evaluate import evaluate, load_eval_data, open_runner, report_text, tta_scores
from converter.evaluation.failures import plot_confusion
from edge_app.argparsing import StrictParser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="evaluate-model", description="Accuracy (with its 95 % interval), per-class precision/recall, confusion matrix and "
                     "latency of a model, and how its training run scored it.")
    p.add_argument("model", type=Path, help="a .keras model, a .tflite model, or a model folder (model.tflite + labels.txt)")
    p.add_argument("--data", required=True, help="cifar10, fashion-mnist, or a class-per-folder folder/.tar.gz/.zip")
    p.add_argument("--split", default="val", help="val (the carve train-model held out; default), or a split of the data such as test")
    p.add_argument("--image-size", help="resize images to N or HxW")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--limit", type=int, help="evaluate on at most N images (stratified)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads for .tflite (default 1)")
    p.add_argument("--out", type=Path, help="folder for evaluation.json, confusion.txt and confusion.png")
    p.add_argument("--json", action="store_true", help="print JSON instead of the text report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tta", action="store_true",
                   help="also report accuracy with airbench's test-time augmentation (mirror and 1 px shifts: 6 runs an image); "
                   "the device always runs one pass")
    add_cache_flag(p)
    add_common_flags(p)
    return p


def _main(args: argparse.Namespace) -> int:
    runner = open_runner(args.model, args.threads)
    want = (runner.input_shape[0], runner.input_shape[1])
    size = parse_size(args.image_size)
    try:
        data = load_eval_data(args.data, args.split, size, args.val_fraction, args.seed)
    except MixedSizesError:
        if size is not None:
            raise
        log.info("images of several sizes: fitting them to the model's %dx%d as they load", *want)
        data = load_eval_data(args.data, args.split, want, args.val_fraction, args.seed)
    if data.image_shape[:2] != want:
        log.info("resizing %s images to the model's %dx%d", "x".join(map(str, data.image_shape[:2])), *want)
        data = Dataset(resize_batch(data.x, want), data.y, data.classes, data.name)
    if args.limit and args.limit < len(data):
        data = data.subset(stratified_sample(data.y, max(1, args.limit // len(data.classes)), args.seed))
    ev = evaluate(runner, data, args.split)
    if args.tta:
        ev.tta_accuracy = float(np.mean(np.argmax(tta_scores(runner, data.x, plain=ev.scores), 1) == data.y))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "evaluation.json").write_text(json.dumps(ev.to_json(), indent=1) + "\n")
        (args.out / "confusion.txt").write_text(report_text(ev))
        plot_confusion(ev.analysis, args.out / "confusion.png")
        log.info("wrote %s", args.out)
    print(json.dumps(ev.to_json(), indent=1) if args.json else report_text(ev), end="" if not args.json else "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("evaluate-model", _main, args)


if __name__ == "__main__":
    sys.exit(main())
