#!/usr/bin/env bash
# The dogs-vs-cats transfer-learning table of docs/transfer.md: for each input size, the default recipe
# (train-model with no --arch: EfficientNet-Lite0, ImageNet weights, cached features, head), its int8
# conversion, and the int8 model on the archive's 2,000-photo test split (one thread).
#
#   bash benchmarks/transfer_cats_vs_dogs.sh [SIZE ...]     # default: 224 160 128 96
#
# Writes reports/cats-vs-dogs-transfer/lite0-<SIZE>/{train_report,evaluation}.json and prints one row per size.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EDGE_RECOGNITION_DATASETS:-../shared/datasets}/cats-vs-dogs.tar.gz"
bin=.venv/bin
# A fresh cache for each size, so the times are those of a first run (decoding, weight conversion and features included).
cache_root=$(mktemp -d); trap 'rm -rf "$cache_root"' EXIT
sizes=("$@"); [ "${#sizes[@]}" -gt 0 ] || sizes=(224 160 128 96)
for size in "${sizes[@]}"; do
    run="runs/cvd-lite0-$size" bundle="runs/cvd-lite0-$size-bundle" rep="reports/cats-vs-dogs-transfer/lite0-$size"
    mkdir -p "$rep"
    export EDGE_RECOGNITION_CACHE="$cache_root/$size"
    start=$(date +%s)
    "$bin/train-model" --data "$data" --image-size "$size" --out "$run" -q
    trained=$(date +%s)
    "$bin/convert-model" "$run/model.keras" --data "$data" --out "$bundle" -q
    done_at=$(date +%s)
    "$bin/evaluate-model" "$bundle" --data "$data" --split test --image-size "$size" --threads 1 --out "$rep" -q --json > /dev/null
    cp "$run/train_report.json" "$rep/"
    cp "$bundle/manifest.json" "$rep/"
    python3 - "$rep" "$size" $((trained - start)) $((done_at - trained)) <<'PY'
import json, sys
rep, size, train_s, convert_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ev = json.load(open(f"{rep}/evaluation.json")); man = json.load(open(f"{rep}/manifest.json"))
row = {"size": int(size), "test_int8": ev["accuracy"], "val_float": man["accuracy"]["float"], "val_int8": man["accuracy"]["int8"],
       "train_command_s": train_s, "convert_command_s": convert_s, "latency_ms_1thread": ev["latency_ms"]["mean"],
       "size_bytes": man["size_bytes"], "macs": man["macs"]}
json.dump(row, open(f"{rep}/row.json", "w"), indent=1)
print(json.dumps(row))
PY
done
