"""Which score threshold suits which model: frames reported and reported top-1 right, per threshold, for the shipped bundles.

edge-app reports only classes whose score reaches ``threshold`` ([classification], ``--threshold``); a frame whose top-1
is below it reports nothing. For each shipped bundle (``models/imagenet``, ``models/cats-vs-dogs``, ``models/cifar10``)
this runs the device runtime (``edge_app.model.Classifier``, one thread, frames decoded as a camera gives them: BGR, full
size, the app's own centre crop and resize) on real photos:

* ``pets``: the test split of ``../shared/datasets/cats-vs-dogs.tar.gz`` (2,000 photos, 1,000 cats and 1,000 dogs;
  the cats-vs-dogs bundle was trained on the train split only);
* ``cifar``: the last ``--cifar-per-class`` images of each class of ``cifar10-train.tar.gz`` (32 px; the cifar10
  bundle was trained on all of them, so its numbers on them are optimistic).

"Right" is the photo's class; for ImageNet a cat photo is right when the top-1 is one of ImageNet's five domestic
cat classes (281-285) and a dog photo one of the dog breeds (151-268), as ``tests/edge_app/test_imagenet_bundle.py``
names them; for the cats-vs-dogs bundle on CIFAR only the cat and dog images have a right class, the other eight
classes are ``outside`` (nothing it knows is in the picture: every report is a false one). Per threshold:
``reported`` (share of frames whose top-1 reaches it), ``right_of_reported`` (share of those whose top-1 is right)
and ``right_of_all``; for ``outside`` images only ``reported``. ``criterion``: the highest threshold of the grid that
hides under 5 % of the held-out pet photos (what the shipped manifests recommend: imagenet 0.1, cats-vs-dogs 0.7, and
cifar10 0.2, which ``class_count_threshold`` gives it without a manifest key), beside what edge-app runs it with.

    nice -n 5 .venv/bin/python benchmarks/thresholds.py --out reports/thresholds/shipped-bundles.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_app.model import Classifier, class_count_threshold, default_model_dir, resolve_model

HIDES_UNDER = 0.05  # the criterion: the highest threshold on the grid that hides under 5 % of held-out in-domain photos
HELD_OUT = "pets"  # the set no shipped bundle was trained on (the cifar10 bundle saw every CIFAR-10 training image)
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
IMAGENET_PETS = {"cat": set(range(281, 286)), "dog": set(range(151, 269))}
BUNDLES = ("imagenet", "cats-vs-dogs", "cifar10")
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def photos(archive: Path, split: str, per_class: int | None, last: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """``(class, BGR image)`` of ``split/<class>/*.jpg`` in the archive: every one, or ``per_class`` a class (the last ones)."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg") and Path(m.name).parts[0] == split]
        by_class: dict[str, list[tarfile.TarInfo]] = {}
        for m in members:
            by_class.setdefault(Path(m.name).parts[1], []).append(m)
        for cls, items in sorted(by_class.items()):
            items.sort(key=lambda m: m.name)
            chosen = items if per_class is None else items[-per_class:] if last else items[:per_class]
            for m in chosen:
                data = tar.extractfile(m)
                assert data is not None
                image = cv2.imdecode(np.frombuffer(data.read(), np.uint8), cv2.IMREAD_COLOR)
                assert image is not None, m.name
                yield cls, np.asarray(image)


def right_ids(bundle: str, labels: list[str], cls: str) -> set[int] | None:
    """The class ids that are right for a photo of ``cls`` under ``bundle``; None when the bundle has no class for it."""
    if bundle == "imagenet":
        return IMAGENET_PETS.get(cls)
    return {labels.index(cls)} if cls in labels else None


def curve(scores: np.ndarray, right: np.ndarray | None) -> list[dict[str, float]]:
    rows = []
    for t in THRESHOLDS:
        shown = scores >= t
        row = {"threshold": t, "reported": round(float(shown.mean()), 4) if len(scores) else 0.0}
        if right is not None:
            row["right_of_reported"] = round(float(right[shown].mean()), 4) if shown.any() else 0.0
            row["right_of_all"] = round(float((right & shown).mean()), 4)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, default=DATASETS)
    p.add_argument("--pets", type=int, default=None, help="cats-vs-dogs test photos a class (default: all 1,000)")
    p.add_argument("--cifar-per-class", type=int, default=100)
    p.add_argument("--bundles", nargs="+", default=list(BUNDLES))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    started = time.time()
    sets = {
        "pets": list(photos(args.datasets / "cats-vs-dogs.tar.gz", "test", args.pets)),
        "cifar": list(photos(args.datasets / "cifar10-train.tar.gz", "train", args.cifar_per_class, last=True)),
    }
    result: dict[str, object] = {
        "what": "share of frames reported and reported top-1 right, per score threshold, for the shipped bundles on real photos",
        "command": "nice -n 5 .venv/bin/python " + " ".join(["benchmarks/thresholds.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.system()}, 1 interpreter thread",
        "sets": {"pets": f"cats-vs-dogs.tar.gz test split, {len(sets['pets'])} photos",
                 "cifar": f"cifar10-train.tar.gz, the last {args.cifar_per_class} images of each class ({len(sets['cifar'])})"},
        "bundles": {},
    }
    for bundle in args.bundles:
        folder = default_model_dir(bundle)
        clf = Classifier(resolve_model(folder), num_threads=1)
        labels = list(clf.labels)
        entry: dict[str, object] = {"classes": len(labels), "sets": {}}
        for name, items in sets.items():
            inside_scores, inside_right, outside_scores = [], [], []
            for cls, image in items:
                scores = clf.scores(image)
                top = int(np.argmax(scores))
                ids = right_ids(bundle, labels, cls)
                if ids is None:
                    outside_scores.append(float(scores[top]))
                else:
                    inside_scores.append(float(scores[top]))
                    inside_right.append(top in ids)
            s, r = np.array(inside_scores), np.array(inside_right, bool)
            out = np.array(outside_scores)
            block: dict[str, object] = {}
            if len(s):
                block["inside"] = {"images": len(s), "top1_right": round(float(r.mean()), 4),
                                   "top1_score_quantiles": {q: round(float(np.quantile(s, q / 100)), 4) for q in (5, 10, 25, 50)},
                                   "per_threshold": curve(s, r)}
            if len(out):
                block["outside"] = {"images": len(out), "top1_score_median": round(float(np.median(out)), 4), "per_threshold": curve(out, None)}
            entry["sets"][name] = block  # type: ignore[index]
            print(f"{bundle} on {name}: {json.dumps(block)[:400]}", flush=True)
        held = entry["sets"][HELD_OUT]["inside"]["per_threshold"]  # type: ignore[index]
        entry["criterion"] = {
            "rule": f"the highest threshold of the grid that hides under {HIDES_UNDER:.0%} of the {HELD_OUT} photos (held out)",
            "threshold": max(r["threshold"] for r in held if r["reported"] > 1 - HIDES_UNDER),
            "class_count_rule": class_count_threshold(len(labels)),
            "in_force_without_a_setting": clf.threshold._asdict(),
        }
        print(f"{bundle}: {entry['criterion']}", flush=True)
        result["bundles"][bundle] = entry  # type: ignore[index]
    result["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
