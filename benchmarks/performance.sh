#!/usr/bin/env bash
# The performance tables of docs/performance.md: both shipped models, headless, default threads, full and reduced decode,
# the naive loop, the decode-only ceiling, 30 fps paced, and two paced cameras in one process.
# Usage: bash benchmarks/performance.sh [OUT]   (writes OUT/<model>-<decode>.json, default reports/performance/<machine>:
# one folder per machine kind, e.g. reports/performance/intel-avx512, so each machine keeps its rows)
set -euo pipefail
cd "$(dirname "$0")/.."
edge_app="${EDGE_APP:-.venv/bin/edge-app}"
source benchmarks/machine.sh
out="${1:-reports/performance/$(machine_kind)}"
mkdir -p "$out"
for model in cifar10 cats-vs-dogs; do
  frames=1500; [ "$model" = cats-vs-dogs ] && frames=600
  for decode in full reduced; do
    "$edge_app" bench --model "models/$model" --frames "$frames" --repeat 3 --decode "$decode" --rate 30 --cameras 2 --json -q > "$out/$model-$decode.json"
  done
done
python3 - "$out" <<'PY'
import json, os, platform, sys, time
out = sys.argv[1]
print(f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
print("| model | decode | pipeline FPS | naive FPS | pipeline / naive | decode-only ceiling FPS | pipeline / ceiling | bare invoke | CPU per frame | at 30 fps | 2 cameras at 30 fps, per camera (shared / one app each) |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for model in ("cifar10", "cats-vs-dogs"):
    for decode in ("full", "reduced"):
        r = json.load(open(f"{out}/{model}-{decode}.json"))
        m = r["repeats"]["median"]
        ceiling = r["decode"]["fps"]
        ceiling_bound = min(ceiling, 1e3 / r["bare_invoke"]["mean"])
        cams = {c["mode"]: c["core_pct_per_camera"] for c in r["cameras"]}
        print(f"| {model} | {decode} | {m['pipeline_fps']:.1f} | {m['naive_fps']:.1f} | {m['speedup']:.2f}x | {ceiling:.0f} | "
              f"{r['pipeline']['fps'] / ceiling:.2f} (of min(decode, invoke) {r['pipeline']['fps'] / ceiling_bound:.2f}) | {r['bare_invoke']['mean']:.2f} ms | "
              f"{r['pipeline']['cpu_ms_per_frame']:.2f} ms | {r['paced']['core_pct']:.1f} % | {cams['shared']:.1f} % / {cams['per-source']:.1f} % |")
PY
