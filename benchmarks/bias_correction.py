"""Issue 34 ("int8 as good as float"): convert-model with and without --bias-correction, paired on held-out photos.

One draw of benchmarks/few_photos.py's cifar5 task (five CIFAR-10 classes, PER_CLASS training photos a class, seed 0,
200 a class held back, the same draw), trained once with ``train-model --arch efficientnet-lite0``, converted twice
(``convert-model --bias-correction off`` and ``auto``), and both int8 models scored against the float model on the
held-back photos: accuracy, agreement (int8 top-1 = float top-1) and the two discordant counts.

    .venv/bin/python benchmarks/bias_correction.py --per-class 600 --out reports/bias-correction/cifar5-600.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import few_photos as fp


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="work folder (kept; a finished training there is reused)")
    p.add_argument("--out", type=Path, help="the result as JSON")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bias-correction-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDGE_RECOGNITION_CACHE": str(work / "cache")}
    src = work / "src"
    if not src.exists():
        fp.extract(fp.DATASETS / "cifar10-train.tar.gz", src, keep=fp.CIFAR5)
    every = fp.files_by_class(src / "train")
    rng = np.random.default_rng(999)  # few_photos.py's held-back draw
    held = {c: set(rng.choice(len(fs), 200, replace=False).tolist()) for c, fs in every.items()}
    test = {c: [f for i, f in enumerate(fs) if i in held[c]] for c, fs in every.items()}
    pool = {c: [f for i, f in enumerate(fs) if i not in held[c]] for c, fs in every.items()}
    test_root = work / "test-tree"
    if not test_root.exists():
        fp.link_tree(test_root, "test", test)
    rng = np.random.default_rng(args.seed)
    tree = work / f"seed{args.seed}"
    if not tree.exists():
        fp.link_tree(tree, "train", {c: [fs[i] for i in sorted(rng.choice(len(fs), args.per_class, replace=False))] for c, fs in pool.items()})
    run = work / f"run{args.seed}"
    if not (run / "model.keras").exists():
        subprocess.run([str(fp.BIN / "train-model"), "--data", str(tree), "--out", str(run), "-q", "--arch", "efficientnet-lite0"], env=env, check=True)

    from converter.data.datasets import load_dataset  # noqa: PLC0415
    from converter.evaluation.evaluate import keras_predict, tflite_predict  # noqa: PLC0415
    from converter.export.convert import load_keras_model  # noqa: PLC0415

    photos = load_dataset(str(test_root), "test", (224, 224))
    float_top = np.argmax(keras_predict(load_keras_model(run / "model.keras"), photos.x, batch_size=50), 1)
    result: dict[str, object] = {"task": "cifar5", "per_class": args.per_class, "seed": args.seed, "test_images": len(photos.y),
                                 "float_accuracy": round(float(np.mean(float_top == photos.y)), 4)}
    for mode in ("off", "auto"):
        bundle = work / f"bundle-{mode}"
        subprocess.run([str(fp.BIN / "convert-model"), str(run / "model.keras"), "--data", str(tree), "--out", str(bundle), "-q",
                        "--allow-drop", "--bias-correction", mode], env=env, check=True, stdout=subprocess.DEVNULL)
        q_top = np.argmax(tflite_predict(bundle / "model.tflite", photos.x), 1)
        manifest = json.loads((bundle / "manifest.json").read_text())
        result[mode] = {
            "int8_accuracy": round(float(np.mean(q_top == photos.y)), 4),
            "agreement": round(float(np.mean(q_top == float_top)), 4),
            "float_right_int8_wrong": int(np.sum((float_top == photos.y) & (q_top != photos.y))),
            "int8_right_float_wrong": int(np.sum((float_top != photos.y) & (q_top == photos.y))),
            "carve": {k: manifest["accuracy"].get(k) for k in ("float", "int8", "agreement", "images", "passed")},
            "bias_correction": manifest.get("bias_correction"),
        }
    result.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=fp.machine(),
                  command=f".venv/bin/python benchmarks/bias_correction.py --per-class {args.per_class} --seed {args.seed}")
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
