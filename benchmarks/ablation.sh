#!/usr/bin/env bash
# Ablation of the airbench training features on CIFAR-10: one run each, the same seed, the same carve
# (10 % of each class held out by train-model), then int8-converted and scored on that carve.
#   bash benchmarks/ablation.sh [LIMIT_PER_CLASS] [EPOCHS] [BATCH]   (default 1000 4 512: a reduced scale
#   that fits a 2-core CPU session; 4500 10 1024 is airbench's full scale)
# Writes reports/ablation/<run>.json (train report fields + int8 accuracy) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-1000}"; epochs="${2:-4}"; batch="${3:-512}"
data="${CIFAR10_DATA:-../shared/datasets/cifar10-train.tar.gz}"
py="${PYTHON:-.venv/bin/python}"
out=reports/ablation; runs="${RUNS_DIR:-runs/ablation}"
mkdir -p "$out" "$runs"
one() {  # name, extra train-model flags...
  local name="$1"; shift
  [ -f "$out/$name.json" ] && { echo "ablation: $name done already"; return; }
  "$py" -m converter.cli.train --data "$data" --arch edge --limit-per-class "$limit" --epochs "$epochs" --batch-size "$batch" \
      --seed 0 --out "$runs/$name" -q "$@" > /dev/null
  "$py" -m converter.cli.convert "$runs/$name/model.keras" --data "$data" --out "$runs/$name/bundle" -q > "$runs/$name/convert.json"
  "$py" - "$runs/$name" "$out/$name.json" "$name" "$limit" <<'PY'
import json, sys
run, dest, name, limit = sys.argv[1:]
r = json.load(open(f"{run}/train_report.json"))
c = json.loads(open(f"{run}/convert.json").read().strip().splitlines()[-1])
keep = {k: r[k] for k in ("recipe", "features", "val_accuracy", "best_epoch", "kept", "train_seconds", "train_images", "val_images", "machine", "date")}
keep.update(run=name, epochs=len(json.load(open(f"{run}/history.json"))["loss"]), batch=r["config"]["batch_size"],
            limit_per_class=int(limit), float=c.get("float"), int8=c.get("int8"))
json.dump(keep, open(dest, "w"), indent=1)
PY
  echo "ablation: $name $(tr -d '\n ' < "$out/$name.json" | cut -c1-160)"
}
one airbench --recipe airbench
one classic --recipe classic
for f in bn-bias-lr lookahead whiten-norm alt-flip dirac; do one "without-$f" --recipe airbench --without "$f"; done
"$py" - "$out" <<'PY'
import glob, json, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(f"{sys.argv[1]}/*.json"))]
base = next((r for r in rows if r["run"] == "airbench"), None)
print("| run | features | carve accuracy, float | int8 | int8 vs all features | train s |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for r in rows:
    d = f"{(r['int8'] - base['int8']) * 100:+.1f} pt" if base and r["int8"] is not None else ""
    print(f"| {r['run']} | {', '.join(r['features']) or '-'} | {r['float']:.4f} | {r['int8']:.4f} | {d} | {r['train_seconds']:.0f} |")
PY
