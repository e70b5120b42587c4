#!/usr/bin/env bash
# The airbench recipe at full scale on CIFAR-10: 45,000 training images, the seed-0 5,000-image carve held out.
# One run per call: train-model (resumable), convert-model, evaluate-model --threads 1 --tta on the carve.
#   bash benchmarks/full_scale.sh NAME [train-model flags...]
#   e.g. bash benchmarks/full_scale.sh w128-e10-bf16 --widths 64,128,128 --epochs 10 --precision mixed_bfloat16
# An interrupted run continues where it stopped when the same command is given again (--resume).
# Writes reports/full-scale/NAME.json (accuracy float / int8 / int8 with TTA, one-core int8 latency, training
# seconds, machine) and prints the table of every run there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: bash benchmarks/full_scale.sh NAME [train-model flags...]" >&2; exit 2; }
name="$1"; shift
data="${CIFAR10_DATA:-../shared/datasets/cifar10-train.tar.gz}"
py="${PYTHON:-.venv/bin/python}"
out=reports/full-scale; run="${RUNS_DIR:-runs/full-scale}/$name"
mkdir -p "$out"
if [ ! -f "$run/model.keras" ]; then
  resume=(); [ -f "$run/resume.keras" ] && resume=(--resume)
  "$py" -m converter.cli.train --data "$data" --arch edge --recipe airbench --seed 0 --out "$run" "${resume[@]}" "$@"
fi
[ -f "$run/bundle/model.tflite" ] || "$py" -m converter.cli.convert "$run/model.keras" --data "$data" --out "$run/bundle" -q > /dev/null
"$py" -m converter.cli.evaluate "$run/bundle" --data "$data" --threads 1 --tta --json -q > "$run/evaluation.json"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
isa="$(grep -m1 -owE 'avx512f|avx2' /proc/cpuinfo | sort -r | head -1 || true)"
grep -qw amx_bf16 /proc/cpuinfo && isa="$isa, amx_bf16"
"$py" - "$run" "$out/$name.json" "$name" "$cpu ($isa, $(nproc) cores)" <<'PY'
import json, sys
run, dest, name, machine = sys.argv[1:]
r = json.load(open(f"{run}/train_report.json"))
e = json.load(open(f"{run}/evaluation.json"))
m = json.load(open(f"{run}/bundle/manifest.json"))
json.dump({"run": name, "widths": r["config"]["widths"], "epochs": r["config"]["epochs"], "precision": r["precision"],
           "features": [f for f in r["features"] if f != "pool-bn"], "activation": r["config"].get("activation", "relu"),
           # runs trained on 2026-12-04 before --pool-before-bn was a flag listed it as the feature "pool-bn"
           "pool_before_bn": r["config"].get("pool_before_bn", "pool-bn" in r["features"]), "cutout": r["config"].get("cutout", 0), "translate": r["config"].get("translate"), "train_images": r["train_images"], "val_images": r["val_images"],
           # train-model --teacher: the teachers (run names), their averaged accuracy on the carve, the target's weight and temperature
           "teachers": None if not r.get("teachers") else {"runs": [t["model"].split("/")[-2] for t in r["teachers"]["models"]],
               "val_accuracy": r["teachers"]["val_accuracy"], "weight": r["teachers"]["weight"], "temperature": r["teachers"]["temperature"]},
           "float": r["val_accuracy"], "int8": m["accuracy"]["int8"], "int8_tta": e.get("tta_accuracy"),
           "latency_ms_1_thread": e["latency_ms"], "params": r["params"], "macs": r["macs"], "size_bytes": m["size_bytes"],
           "train_seconds": r["train_seconds"], "machine": machine, "date": r["date"]}, open(dest, "w"), indent=1)
PY
"$py" - "$out" <<'PY'
import glob, json, sys
all_features = {"alt-flip", "bn-bias-lr", "dirac", "lookahead", "whiten-norm"}
print("| run | widths | epochs | precision | activation, order | features left out | distilled from (their carve accuracy) | carve float | int8 | int8, TTA | int8 latency, 1 thread (mean / p95) | train s | machine, date |")
print("| --- | --- | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
for p in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    r = json.load(open(p))
    lat, tta, t = r["latency_ms_1_thread"], r["int8_tta"], r.get("teachers")
    kd = f"{len(t['runs'])} runs ({t['val_accuracy']:.4f}), weight {t['weight']}, T {t['temperature']}" if t else "-"
    print(f"| {r['run']} | {'/'.join(map(str, r['widths']))} | {r['epochs']} | {r['precision']} | {r.get('activation', 'relu')}{', pool-bn' if r.get('pool_before_bn') else ''} | {', '.join(sorted(all_features - set(r['features']))) or '-'} | {kd} | {r['float']:.4f} | {r['int8']:.4f} | "
          f"{'' if tta is None else f'{tta:.4f}'} | {lat['mean']:.2f} / {lat['p95']:.2f} ms | {r['train_seconds']:.0f} | {r['machine']}, {r['date']} |")
PY
