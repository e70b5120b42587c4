"""Issue 34 ("Few photos"), feature level: which backbone, head and views suit 20 (and ~600) photos a class.

The frozen backbone's pooled features are computed once per backbone, photo and view and cached as ``.npy`` under
``--cache`` (default /tmp/fewshot-study); then many draws of N training photos a class are fitted with each head in
milliseconds and scored on held-out photos (the same tasks and held-out photos as benchmarks/few_photos.py, whose
whole-pipeline numbers are the acceptance ones; this study only ranks the levers, in float32).

* tasks: ``cvd`` (dogs-vs-cats: draws from its train/ split, scored on all 2,000 test/ photos); ``cifar5`` (five
  CIFAR-10 classes, 32 px upscaled; 200 a class held back with seed 999 as in few_photos.py; draws from the rest).
* backbones: efficientnet-lite0 @224, -lite1 @240, -lite2 @260 (each at its own ImageNet input size).
* views of a training photo: ``1`` (plain), ``2`` (plain + mirror, the default), ``6`` (+ 4 random resized crops
  with colour jitter, converter.data.augment.augmented_view); test photos are scored on the plain view only.
* heads: ``logreg`` (converter.training.heads.fit_logreg as train-model runs it), ``logreg-l2`` (the same on
  L2-normalised features), ``logreg-avg`` (the views of a photo averaged into one vector before the fit), ``logreg-nll`` (C chosen by the
  held-out likelihood instead of accuracy),
  ``dense`` (converter.training.transfer's dropout + softmax head, Adam, 40 epochs; only where asked: it is slow).

    nice -n 5 .venv/bin/python benchmarks/fewshot_study.py --task cvd --per-class 20 --draws 10
    nice -n 5 .venv/bin/python benchmarks/fewshot_study.py --task cifar5 --per-class 600 --draws 2 --views 2 \\
        --heads logreg,dense

Writes ``--out`` (default reports/few-photos/study/<task>-<N>.json): per backbone/views/head the accuracies of every
draw, their mean and 95 % t interval, the paired difference to lite0 / plain+mirror / logreg, the feature-extraction
speed (images per second, this machine, shared with other jobs), the command, machine and date.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
log = logging.getLogger("fewshot_study")

from benchmarks.few_photos import CIFAR5, DATASETS, ci95, cifar5_split, files_by_class, machine  # noqa: E402 - after sys.path has the checkout


def task_files(task: str, cache: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """The pool to draw training photos from and the held-out photos, as few_photos.py draws them."""
    src = cache / "src" / task
    archive = DATASETS / ("cats-vs-dogs.tar.gz" if task == "cvd" else "cifar10-train.tar.gz")
    if not (src / "done").exists():
        with tarfile.open(archive) as tar:
            keep = None if task == "cvd" else CIFAR5
            members = [m for m in tar.getmembers() if m.isfile() and (keep is None or m.name.split("/")[-2] in keep)]
            tar.extractall(src, members=members, filter="data")
        (src / "done").touch()
    if task == "cvd":
        return files_by_class(src / "train"), files_by_class(src / "test")
    return cifar5_split(files_by_class(src / "train"))


class FeatureStore:
    """Pooled features of one backbone by (file, view), computed on demand and kept in an .npz under the cache."""

    def __init__(self, backbone: str, cache: Path) -> None:
        self.backbone, self.size = backbone, SIZES[backbone]
        self.path = cache / "features" / f"{backbone}.npz"
        self.rows: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as z:
                self.rows = dict(zip(z["keys"].tolist(), z["feats"], strict=True))
        self.model: Any = None
        self.seconds, self.images = 0.0, 0  # extraction time (model.predict only) and images, for the speed

    def _image(self, f: Path, view: str) -> np.ndarray:
        from converter.data.augment import augmented_view  # noqa: PLC0415
        from converter.data.datasets import decode_image  # noqa: PLC0415
        from edge_app.preprocess import fit_to_size  # noqa: PLC0415

        img = decode_image(f.read_bytes())
        if img is None:
            raise SystemExit(f"unreadable image {f}")
        img = fit_to_size(img, (self.size, self.size))
        if view == "mirror":
            return img[:, ::-1]
        if view.startswith("crop"):
            rng = np.random.default_rng([zlib.crc32(str(f.name).encode()), int(view[4:])])
            return augmented_view(img, rng)
        return img

    def get(self, files: list[Path], view: str) -> np.ndarray:
        keys = [f"{f.parent.name}/{f.name}|{view}" for f in files]
        todo = [i for i, k in enumerate(keys) if k not in self.rows]
        if todo:
            if self.model is None:
                from converter.models.backbones import build_backbone  # noqa: PLC0415

                self.model = build_backbone(self.backbone, (self.size, self.size, 3)).model
            for s in range(0, len(todo), 256):
                part = todo[s : s + 256]
                x = np.stack([self._image(files[i], view) for i in part]).astype(np.float32)
                t0 = time.perf_counter()
                out = np.asarray(self.model.predict(x, batch_size=16, verbose=0), np.float32)
                self.seconds += time.perf_counter() - t0
                self.images += len(part)
                for i, row in zip(part, out, strict=True):
                    self.rows[keys[i]] = row
                log.info("%s: %d/%d %s features (%.1f images/s)", self.backbone, s + len(part), len(todo), view, self.images / max(self.seconds, 1e-9))
            self.save()
        return np.stack([self.rows[k] for k in keys])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.rows)), feats=np.stack(list(self.rows.values())))
        tmp.replace(self.path)


def view_names(n: int) -> list[str]:
    return ["plain", "mirror", *[f"crop{k}" for k in range(1, n - 1)]][:n]


def fit_predict(head: str, f: np.ndarray, y: np.ndarray, groups: np.ndarray, *, plain: np.ndarray, n_cls: int, test: np.ndarray,
                seed: int) -> np.ndarray:
    from converter.training.heads import fit_logreg  # noqa: PLC0415

    if head == "logreg":
        return fit_logreg(f, y, groups, n_cls, seed=seed, score_views=plain).predict(test)
    if head == "logreg-nll":
        return fit_logreg(f, y, groups, n_cls, seed=seed, score_views=plain, select="nll").predict(test)
    if head == "logreg-l2":
        def unit(a: np.ndarray) -> np.ndarray:
            return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-9)

        return fit_logreg(unit(f), y, groups, n_cls, seed=seed, score_views=plain).predict(unit(test))
    if head == "logreg-avg":
        photos = np.unique(groups)
        fa = np.stack([f[groups == g].mean(0) for g in photos])
        ya = np.array([y[groups == g][0] for g in photos])
        return fit_logreg(fa, ya, photos, n_cls, seed=seed).predict(test)
    if head == "dense":
        import keras  # noqa: PLC0415

        from converter.training.transfer import TransferConfig, _fit_dense  # noqa: PLC0415

        keras.utils.set_random_seed(seed)
        model, _ = _fit_dense(TransferConfig(seed=seed), f, y, n_cls, None)
        return np.argmax(model.predict(test, verbose=0), 1)
    raise SystemExit(f"unknown head {head}")


def speed_only(args: argparse.Namespace, files: list[Path]) -> int:
    """Images per second of each backbone's forward pass (batch 16, after a warm-up batch), one right after another."""
    from converter.models.backbones import build_backbone  # noqa: PLC0415

    out = args.out or ROOT / "reports" / "few-photos" / "study" / "feature-speed.json"
    rows = {}
    for backbone in args.backbones.split(","):
        store = FeatureStore(backbone, args.cache)
        model = build_backbone(backbone, (store.size, store.size, 3)).model
        x = np.stack([store._image(f, "plain") for f in files]).astype(np.float32)
        model.predict(x[:16], batch_size=16, verbose=0)
        t0 = time.perf_counter()
        model.predict(x, batch_size=16, verbose=0)
        rows[backbone] = {"size": store.size, "images": len(x), "images_per_s": round(len(x) / (time.perf_counter() - t0), 1)}
        log.info("%s: %.1f images/s", backbone, rows[backbone]["images_per_s"])
    report = {"feature_speed": rows, "command": shlex.join(["nice", "-n", "5", ".venv/bin/python", "benchmarks/fewshot_study.py", *sys.argv[1:]]),
              "machine": f"{machine()} (shared with other jobs)", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "note": "float32 forward pass only, backbones timed one right after another on a shared 2-core machine"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["cvd", "cifar5"], default="cvd")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--backbones", default=",".join(SIZES))
    p.add_argument("--views", default="1,2,6", help="view counts to compare (1 plain, 2 + mirror, more: + crops)")
    p.add_argument("--heads", default="logreg,logreg-l2,logreg-avg")
    p.add_argument("--pool-per-class", type=int, help="draw from a fixed sub-pool of this many photos a class (fewer features)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fewshot-study")
    p.add_argument("--out", type=Path)
    p.add_argument("--speed-images", type=int, default=0,
                   help="only time each backbone's forward pass on this many held-out photos, back to back (the same load for all)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    pool, test = task_files(args.task, args.cache)
    if args.pool_per_class:
        rng = np.random.default_rng(998)
        pool = {c: [fs[i] for i in sorted(rng.choice(len(fs), args.pool_per_class, replace=False))] for c, fs in pool.items()}
    classes = sorted(pool)
    test_files = [f for c in classes for f in test[c]]
    y_test = np.array([i for i, c in enumerate(classes) for _ in test[c]])
    draws = []
    for seed in range(args.draws):
        rng = np.random.default_rng(seed)  # the same draws as few_photos.py's seeds (without --pool-per-class)
        draws.append({c: [pool[c][i] for i in sorted(rng.choice(len(pool[c]), args.per_class, replace=False))] for c in classes})
    if args.speed_images:
        return speed_only(args, test_files[: args.speed_images])
    view_counts = [int(v) for v in args.views.split(",")]
    heads = args.heads.split(",")
    command = shlex.join(["nice", "-n", "5", ".venv/bin/python", "benchmarks/fewshot_study.py", *sys.argv[1:]])
    results: list[dict[str, object]] = []
    speed: dict[str, dict[str, float]] = {}
    out = args.out or ROOT / "reports" / "few-photos" / "study" / f"{args.task}-{args.per_class}.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    if previous.get("draws") != args.draws or previous.get("pool_per_class") != args.pool_per_class:
        previous = {}
    commands = [*previous.get("commands", []), command]

    def write() -> None:
        """The report so far (after each backbone and view count: a long run that is stopped keeps what it measured)."""
        done = {(r["backbone"], r["views"], r["head"]) for r in results}
        merged = [r for r in previous.get("results", []) if (r["backbone"], r["views"], r["head"]) not in done] + results
        merged.sort(key=lambda r: (str(r["backbone"]), int(r["views"]), str(r["head"])))
        base = next((r for r in merged if r["backbone"] == "efficientnet-lite0" and r["views"] == 2 and r["head"] == "logreg"), None)
        if base is not None:  # the paired difference (same draws) to the current default, with its 95 % t interval
            for r in merged:
                d, half = ci95([a - b for a, b in zip(r["accuracy"], base["accuracy"], strict=True)])
                r["vs_default"], r["vs_default_ci95"] = round(d, 4), round(half, 4)
        report = {
            "task": args.task, "per_class": args.per_class, "draws": args.draws, "test_images": len(test_files),
            "pool_per_class": args.pool_per_class,
            "baseline": "efficientnet-lite0, plain + mirror views, logreg (the train-model default before this study)",
            "results": merged,
            "feature_speed": {**previous.get("feature_speed", {}), **speed},
            "commands": commands,
            "machine": f"{machine()} (shared with other jobs)", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "note": "float32 features and heads; timings on a shared 2-core machine (other engineers' jobs ran too)",
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")

    for backbone in args.backbones.split(","):
        store = FeatureStore(backbone, args.cache)
        f_test = store.get(test_files, "plain")
        every = sorted({f for chosen in draws for c in classes for f in chosen[c]})
        for v in view_names(max(view_counts)):  # every feature first, in large batches
            store.get(every, v)
        for n_views in view_counts:
            acc: dict[str, list[float]] = {h: [] for h in heads}
            fit_s: dict[str, float] = {h: 0.0 for h in heads}
            for seed, chosen in enumerate(draws):
                files = [f for c in classes for f in chosen[c]]
                y1 = np.array([i for i, c in enumerate(classes) for _ in chosen[c]])
                f = np.concatenate([store.get(files, v) for v in view_names(n_views)])
                y = np.tile(y1, n_views)
                groups = np.tile(np.arange(len(files)), n_views)
                plain = np.repeat(np.arange(n_views) == 0, len(files))
                for h in heads:
                    t0 = time.perf_counter()
                    pred = fit_predict(h, f, y, groups, plain=plain, n_cls=len(classes), test=f_test, seed=seed)
                    fit_s[h] += time.perf_counter() - t0
                    acc[h].append(float(np.mean(pred == y_test)))
            for h in heads:
                mean, half = ci95(acc[h])
                results.append({"backbone": backbone, "size": store.size, "views": n_views, "head": h, "accuracy": [round(a, 4) for a in acc[h]],
                                "mean": round(mean, 4), "ci95": round(half, 4), "head_fit_s_mean": round(fit_s[h] / len(draws), 2)})
                log.info("%s %s %d/class %d views %s: %.4f +- %.4f", args.task, backbone, args.per_class, n_views, h, mean, half)
            if store.images:
                speed[backbone] = {"images": store.images, "images_per_s": round(store.images / store.seconds, 1), "size": store.size}
            write()
    write()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
