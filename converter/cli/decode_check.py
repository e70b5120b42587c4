"""``check-decode``: how far ``edge-app --decode reduced`` may shrink JPEG frames for a bundle (``python -m converter.cli.decode_check``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from converter.cli.common import add_common_flags, run_cli
from converter.data.datasets import load_dataset, train_val
from converter.errors import DataError, ModelError
from converter.evaluation.decode_check import FRAME_HW, measure
from edge_app.argparsing import StrictParser
from edge_app.errors import ModelError as DeviceModelError
from edge_app.model import Manifest

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(
        prog="check-decode",
        description="Measure how far edge-app --decode reduced may shrink JPEG frames for a model bundle (top-1 agreement with "
        "full decoding on its validation images shown as 640x480 camera frames); --write records it in the bundle's manifest.",
    )
    p.add_argument("model", type=Path, help="the model bundle folder (model.tflite, labels.txt, manifest.json)")
    p.add_argument("--data", help="the model's training data (cifar10, fashion-mnist, or a class-per-folder folder/.tar.gz/.zip)")
    p.add_argument("--frames", type=Path, help="show these photos instead (a class-per-folder folder/.tar.gz/.zip; its test split, "
                   "else train): real detail, for a model whose own images are small (CIFAR-10's 32x32)")
    p.add_argument("--limit", type=int, default=1000, help="check on at most N images (default 1000)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation carve, as in train-model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help="record the result as the manifest's \"decode\" (what edge-app reads)")
    add_common_flags(p)
    return p


def _main(args: argparse.Namespace) -> int:
    manifest_path = args.model / "manifest.json"
    if not manifest_path.is_file():
        raise ModelError(f"no manifest.json in {args.model}; pass a bundle folder written by convert-model")
    try:
        checked = Manifest.read(manifest_path)
    except DeviceModelError as exc:
        raise ModelError(str(exc)) from exc
    manifest = checked.extra
    size = (checked.height, checked.width)  # as convert-model checks: the model's input size
    if args.frames is not None:
        try:
            split, photos = "test", load_dataset(args.frames, "test", (FRAME_HW[0], FRAME_HW[0]))
        except DataError:
            split, photos = "train", load_dataset(args.frames, "train", (FRAME_HW[0], FRAME_HW[0]))
        result = measure(args.model, photos.x, args.limit, photos.y, seed=args.seed, content=f"photos of {args.frames.name} ({split})")
    elif args.data is not None:
        _, val = train_val(args.data, size, args.val_fraction, args.seed)
        result = measure(args.model, val.x, args.limit, val.y, seed=args.seed)
    else:
        raise DataError("nothing to show the model: pass --data (its training data, whose validation carve is used) or --frames PHOTOS")
    if args.write:
        manifest["decode"] = result
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        log.info("wrote decode.cover = %s into %s", result["cover"], manifest_path)
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("check-decode", _main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
