"""``convert-model``: a Keras model to a checked int8 TFLite bundle (``python -m converter.cli.convert``; the work: converter.export.convert)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from converter.cli.common import add_cache_flag, add_common_flags, run_cli
from converter.data.datasets import parse_size, train_val_rows
from converter.errors import DataError
from converter.export.convert import ALPHA, BIAS_CORRECTION, MIN_AGREEMENT, convert_model, load_keras_model, trained_size
from edge_app.argparsing import StrictParser


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="convert-model", description="Convert a Keras model to a checked int8 TFLite bundle (model, labels, manifest).")
    p.add_argument("model", type=Path, help="model.keras written by train-model")
    p.add_argument("--data", required=True, help="the training data (cifar10, fashion-mnist, or a class-per-folder folder/.tar.gz/.zip)")
    p.add_argument("--out", type=Path, required=True, help="output folder (e.g. models/cifar10)")
    p.add_argument("--image-size", help="resize images to N or HxW (default: the size in train_report.json beside the model)")
    p.add_argument("--calib-images", type=int, default=300, help="representative images for calibration (default 300)")
    p.add_argument("--eval-limit", type=int, help="check on at most N validation images (default: all)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation carve, as in train-model")
    p.add_argument("--alpha", type=float, default=ALPHA,
                   help=f"refuse an int8 model significantly worse than float at this level (exact one-sided McNemar test on the "
                   f"images only one of them gets right; default {ALPHA})")
    p.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT,
                   help=f"refuse an int8 model whose top-1 answers agree with float's on fewer of the images (default {MIN_AGREEMENT})")
    p.add_argument("--allow-drop", action="store_true", help="write the int8 model even when the check refuses it")
    p.add_argument("--arch", help="recorded in the manifest (default: from train_report.json)")
    p.add_argument("--bias-correction", choices=BIAS_CORRECTION, default="auto",
                   help="take the int8 weights' expected rounding error off the batch norms before quantising (auto: for models "
                        "trained from a pretrained backbone; measured +2.2 points of int8/float agreement on a transfer model)")
    p.add_argument("--seed", type=int, default=0)
    add_cache_flag(p)
    add_common_flags(p)
    return p


def _main(args: argparse.Namespace) -> int:
    if not 10 <= args.calib_images <= 5000:
        raise DataError(f"--calib-images {args.calib_images} is out of range: use 200-500 (10-5000 accepted)")
    if not 0 < args.alpha < 1 or not 0 <= args.min_agreement <= 1:
        raise DataError(f"--alpha {args.alpha} / --min-agreement {args.min_agreement}: use 0 < alpha < 1 and 0 <= agreement <= 1 "
                        f"(defaults {ALPHA} and {MIN_AGREEMENT})")
    model = load_keras_model(args.model)  # a mistyped path is this one line, before any data is read
    h, w = model.input_shape[1:3]
    size = parse_size(args.image_size) or trained_size(args.model) or ((int(h), int(w)) if h and w else None)
    train, val = train_val_rows(args.data, size, args.val_fraction, args.seed)  # read in batches, never all decoded at once
    res = convert_model(
        args.model, train, val, args.out, calib_images=args.calib_images, eval_limit=args.eval_limit, alpha=args.alpha,
        min_agreement=args.min_agreement, allow_drop=args.allow_drop, arch=args.arch, seed=args.seed, model=model,
        bias_correction=args.bias_correction,
    )
    acc = res.manifest["accuracy"]
    print(json.dumps({"out": str(res.out), "float": acc["float"], "int8": acc["int8"], "images": acc["images"],
                      "size_bytes": res.manifest["size_bytes"], "edgetpu_compatible": res.manifest["edgetpu"]["compatible"],
                      "edgetpu_model": res.manifest["edgetpu_model"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("convert-model", _main, args)


if __name__ == "__main__":
    sys.exit(main())
