"""``python -m converter.cli.quantize_worker MODEL CALIB OUT``: the int8 conversion worker that convert-model starts (converter.export.quantize)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from converter.export.quantize import convert


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.cli.quantize_worker", description="int8 conversion worker (used by convert-model)")
    p.add_argument("model", type=Path)
    p.add_argument("calib", type=Path, help=".npy of uint8 images (N, H, W, C)")
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    convert(args.model, np.load(args.calib, mmap_mode="r"), args.out)  # read one image at a time
    return 0


if __name__ == "__main__":
    sys.exit(main())
