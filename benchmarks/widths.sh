#!/usr/bin/env bash
# The edge CNN's widths against accuracy and int8 latency: the airbench recipe at the ablation's scale
# (benchmarks/ablation.sh), then convert-model and evaluate-model --threads 1 (one core) on the carve.
#   bash benchmarks/widths.sh [WIDTHS ...]   (default: 64,128,128 64,256,256; LIMIT, EPOCHS, BATCH as in ablation.sh)
# Writes reports/widths/<widths>.json and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${LIMIT:-1000}"; epochs="${EPOCHS:-4}"; batch="${BATCH:-512}"
data="${CIFAR10_DATA:-../shared/datasets/cifar10-train.tar.gz}"
py="${PYTHON:-.venv/bin/python}"
out=reports/widths; runs="${RUNS_DIR:-runs/widths}"
mkdir -p "$out" "$runs"
[ "$#" -gt 0 ] || set -- 64,128,128 64,256,256
for widths in "$@"; do
  name="${widths//,/-}"
  "$py" -m converter.cli.train --data "$data" --arch edge --recipe airbench --widths "$widths" --limit-per-class "$limit" \
      --epochs "$epochs" --batch-size "$batch" --seed 0 --out "$runs/$name" -q > /dev/null
  "$py" -m converter.cli.convert "$runs/$name/model.keras" --data "$data" --out "$runs/$name/bundle" -q > /dev/null
  "$py" -m converter.cli.evaluate "$runs/$name/bundle" --data "$data" --threads 1 --json -q > "$runs/$name/evaluation.json"
  "$py" - "$runs/$name" "$out/$name.json" "$widths" <<'PY'
import json, sys
run, dest, widths = sys.argv[1:]
r = json.load(open(f"{run}/train_report.json"))
e = json.load(open(f"{run}/evaluation.json"))
m = json.load(open(f"{run}/bundle/manifest.json"))
json.dump({"widths": widths, "float": r["val_accuracy"], "int8": e["accuracy"], "latency_ms_1_thread": e["latency_ms"],
           "params": r["params"], "macs": r["macs"], "size_bytes": m["size_bytes"], "train_seconds": r["train_seconds"],
           "train_images": r["train_images"], "epochs": r["config"]["epochs"], "batch": r["config"]["batch_size"],
           "machine": r["machine"], "date": r["date"]}, open(dest, "w"), indent=1)
PY
done
"$py" - "$out" <<'PY'
import glob, json, sys
print("| widths | params | multiply-adds | int8 size | carve accuracy, float | int8 | int8 latency, 1 thread (mean / p95) | train s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    r = json.load(open(p))
    lat = r["latency_ms_1_thread"]
    print(f"| {r['widths']} | {r['params']:,} | {r['macs'] / 1e6:.0f} M | {r['size_bytes'] / 1e3:.0f} kB | {r['float']:.4f} | {r['int8']:.4f} | "
          f"{lat['mean']:.2f} / {lat['p95']:.2f} ms | {r['train_seconds']:.0f} |")
PY
