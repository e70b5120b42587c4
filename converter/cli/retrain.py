"""``retrain-model``: train and convert a candidate bundle from an ``edge-app --collect`` folder (``python -m converter.cli.retrain``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from converter.cli.common import add_cache_flag, add_common_flags, run_cli
from converter.data.datasets import parse_size
from converter.training.retrain import retrain
from edge_app.argparsing import StrictParser


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="retrain-model", description="Train and convert a candidate bundle from an edge-app --collect folder's labelled frames.")
    p.add_argument("folder", type=Path, help="the --collect folder (its train/<class>/ holds the labelled images)")
    p.add_argument("--current", type=Path, help="the bundle running now: report how often the candidate disagrees with it")
    p.add_argument("--arch", default="efficientnet-lite0", help="pretrained backbone (default efficientnet-lite0)")
    p.add_argument("--image-size", help="input size (default: the backbone's, 224)")
    p.add_argument("--epochs", type=int, help="head epochs (default 40)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held out per class for the checks (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    add_cache_flag(p)
    add_common_flags(p)
    return p


def _main(args: argparse.Namespace) -> int:
    result = retrain(args.folder, current=args.current, arch=args.arch, image_size=parse_size(args.image_size),
                     val_fraction=args.val_fraction, seed=args.seed, epochs=args.epochs)
    print(json.dumps({k: result[k] for k in ("candidate", "val_accuracy", "recall")} | ({"current": result["current"]} if "current" in result else {})))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("retrain-model", _main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
