#!/usr/bin/env bash
# Interpreter threads against pipeline speed and CPU, for the shipped models: what --threads' default rests on.
# Usage: bash benchmarks/threads.sh [FRAMES]   (writes reports/threads/<model>-<threads>.json and prints a table)
set -euo pipefail
cd "$(dirname "$0")/.."
frames="${1:-900}"
edge_app="${EDGE_APP:-.venv/bin/edge-app}"
out=reports/threads
mkdir -p "$out"
for model in cifar10 cats-vs-dogs; do
  for threads in 1 2 4; do
    "$edge_app" bench --model "models/$model" --frames "$frames" --threads "$threads" --rate 30 --rate-seconds 10 --invoke-runs 300 --json -q \
      > "$out/$model-$threads.json"
  done
done
python3 - "$out" <<'PY'
import json, os, platform, sys, time
out = sys.argv[1]
print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
print(f"{'model':<14}{'threads':>8}{'bare invoke ms':>16}{'pipeline FPS':>14}{'CPU ms/frame':>14}{'at 30 FPS, % core':>19}")
for model in ("cifar10", "cats-vs-dogs"):
    for threads in (1, 2, 4):
        r = json.load(open(f"{out}/{model}-{threads}.json"))
        print(f"{model:<14}{threads:>8}{r['bare_invoke']['mean']:>16.3f}{r['pipeline']['fps']:>14.1f}"
              f"{r['pipeline']['cpu_ms_per_frame']:>14.3f}{r['paced']['core_pct']:>19.2f}")
PY
