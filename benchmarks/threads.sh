#!/usr/bin/env bash
# Interpreter threads against pipeline speed and CPU, for the shipped models: what --threads' default rests on.
# Rows: 1, 2 and 4 threads, and the default (auto: one thread if one invoke() takes under 1 ms on one thread,
# else the usable cores, at most 4).
# Usage: bash benchmarks/threads.sh [FRAMES [OUT]]   (writes OUT/<model>-<threads>.json, default
# reports/threads/<machine>: one folder per machine kind, e.g. reports/threads/intel-avx512; prints a table)
set -euo pipefail
cd "$(dirname "$0")/.."
frames="${1:-900}"
edge_app="${EDGE_APP:-.venv/bin/edge-app}"
source benchmarks/machine.sh
out="${2:-reports/threads/$(machine_kind)}"
mkdir -p "$out"
for model in cifar10 cats-vs-dogs; do
  for threads in 1 2 4 auto; do
    flag=(--threads "$threads"); [ "$threads" = auto ] && flag=()
    "$edge_app" bench --model "models/$model" --frames "$frames" "${flag[@]}" --rate 30 --rate-seconds 10 --invoke-runs 300 --json -q \
      > "$out/$model-$threads.json"
  done
done
python3 - "$out" <<'PY'
import json, os, platform, sys, time
out = sys.argv[1]
print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
print("| model | threads | bare invoke() | pipeline FPS | CPU per frame | at 30 fps, one core |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for model in ("cifar10", "cats-vs-dogs"):
    for threads in ("1", "2", "4", "auto"):
        path = f"{out}/{model}-{threads}.json"
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        shown = f"default ({r['threads']})" if threads == "auto" else threads
        print(f"| {model} | {shown} | {r['bare_invoke']['mean']:.3f} ms | {r['pipeline']['fps']:.1f} | "
              f"{r['pipeline']['cpu_ms_per_frame']:.3f} ms | {r['paced']['core_pct']:.2f} % |")
PY
