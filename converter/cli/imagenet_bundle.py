"""``python -m converter.cli.imagenet_bundle``: build the int8 ImageNet-1k bundle (converter.export.imagenet) and check it on real photos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from converter.cli.common import add_common_flags, import_tensorflow_quietly, run_cli
from converter.errors import DataError
from converter.export.imagenet import MIN_AGREEMENT, SIZE, CheckSet, build_bundle, labels_from_timm_wheel, photos, upscaled
from edge_app.argparsing import StrictParser


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="python -m converter.cli.imagenet_bundle",
                     description="Build the int8 ImageNet-1k bundle (EfficientNet-Lite0) and check it on real photos.")
    p.add_argument("--timm-wheel", type=Path, help="a timm wheel (pip download timm --no-deps) to read the class names from")
    p.add_argument("--labels", type=Path, help="or: an existing labels.txt with the 1000 names (e.g. models/imagenet/labels.txt)")
    p.add_argument("--photos", type=Path, required=True, help="cats-vs-dogs.tar.gz: calibration from its train split, checks on its test split")
    p.add_argument("--cifar", type=Path, help="cifar10-train.tar.gz: upscaled images for calibration and a second check")
    p.add_argument("--out", type=Path, required=True, help="output folder (models/imagenet)")
    p.add_argument("--calib-images", type=int, default=300, help="calibration photos from --photos' train split (default 300)")
    p.add_argument("--calib-cifar", type=int, default=100, help="upscaled CIFAR-10 calibration images (default 100)")
    p.add_argument("--check-photos", type=int, default=2000, help="check photos from --photos' test split (default 2000: all)")
    p.add_argument("--check-cifar", type=int, default=1000, help="upscaled CIFAR-10 check images (default 1000)")
    p.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT, help=f"refuse below this top-1 agreement (default {MIN_AGREEMENT})")
    p.add_argument("--seed", type=int, default=0)
    add_common_flags(p)
    return p


def _main(args: argparse.Namespace) -> int:
    if args.quiet and not args.debug:
        import_tensorflow_quietly()
    if args.timm_wheel:
        labels, provenance = labels_from_timm_wheel(args.timm_wheel)
    elif args.labels:
        from edge_app.model import load_labels  # noqa: PLC0415

        labels, provenance = load_labels(args.labels), {"source": f"copied from {args.labels}"}
    else:
        raise DataError("pass --timm-wheel WHEEL (pip download timm --no-deps -d DIR) or --labels labels.txt for the class names")
    cx, _, _ = photos(args.photos, "train", max(1, args.calib_images // 2), args.seed)
    calib_content = f"{len(cx)} photos of {args.photos.name} (train)"
    vx, vy, classes = photos(args.photos, "test", max(1, args.check_photos // 2), args.seed)
    if set(classes) != {"cat", "dog"}:
        raise DataError(f"--photos must hold cat and dog classes (its classes: {', '.join(classes)})")
    checks = [CheckSet(f"photos of {args.photos.name} (test)", vx, vy == classes.index("dog"))]
    if args.cifar:
        ccx, taken = upscaled(args.cifar, max(1, args.calib_cifar // 10), args.seed) if args.calib_cifar else (np.empty((0, SIZE, SIZE, 3), np.uint8), None)
        if len(ccx):
            cx = np.concatenate([cx, ccx])
            calib_content += f" + {len(ccx)} of {args.cifar.name} upscaled from 32 px"
        kx, _ = upscaled(args.cifar, max(1, args.check_cifar // 10), args.seed + 1, skip=taken)
        checks.append(CheckSet(f"{args.cifar.name} upscaled from 32 px", kx))
    manifest = build_bundle(args.out, labels, provenance, cx, checks, calib_content=calib_content, min_agreement=args.min_agreement, seed=args.seed)
    print(json.dumps({"out": str(args.out), "agreement": manifest["accuracy"]["agreement"], "checks": manifest["checks"],
                      "size_bytes": manifest["size_bytes"], "latency_ms": manifest["latency_ms"]["mean"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("imagenet-bundle", _main, args)


if __name__ == "__main__":
    sys.exit(main())
