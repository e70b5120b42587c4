"""Full-integer int8 TFLite conversion of a Keras model (uint8 in, uint8 out, batch of 1).

``quantize_model`` runs the conversion in a fresh Python process (``python -m converter.quantize``):
every ``TFLiteConverter.convert()`` leaks memory, and a crash in the converter must not take the
calling command with it. The model is exported through a SavedModel signature with a static
``[1, H, W, C]`` input (``keras.export.ExportArchive``), as the Edge TPU compiler requires.
Normalisation lives inside the model (a ``Rescaling`` layer), so the representative data is raw
pixels in 0..255 and the quantised input takes raw uint8 pixels (scale 1, zero point 0).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from converter.errors import ModelError, QuantizationError

log = logging.getLogger(__name__)


def quantize_model(model_path: Path, representative: np.ndarray, out: Path, timeout_s: float = 1800.0) -> Path:
    """Write ``out`` (.tflite, int8 with uint8 I/O) from ``model_path`` (.keras), in a subprocess.

    ``representative`` holds raw uint8 images ``(N, H, W, C)`` used to calibrate the activations
    (200-500 training images is the usual amount).
    """
    if not model_path.exists():
        raise ModelError(f"model not found: {model_path}; pass a .keras file written by train-model")
    if representative.ndim != 4 or len(representative) == 0:
        raise QuantizationError(f"representative data must be a non-empty (N, H, W, C) array, got shape {representative.shape}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        calib = Path(tmp) / "calib.npy"
        np.save(calib, representative)
        cmd = [sys.executable, "-m", "converter.quantize", str(model_path), str(calib), str(out)]
        log.info("quantising %s to int8 on %d calibration images", model_path, len(representative))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise QuantizationError(f"int8 conversion of {model_path} took longer than {timeout_s:.0f} s; try fewer calibration images") from None
    if proc.returncode != 0 or not out.exists():
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise QuantizationError(f"int8 conversion of {model_path} failed: {reason}")
    return out


def convert(model_path: Path, calib: np.ndarray, out: Path) -> None:
    """The conversion itself (runs in the worker process; imports TensorFlow)."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    model = keras.models.load_model(model_path, compile=False)
    shape = [1, *model.input_shape[1:]]
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serve",
            fn=lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(shape, tf.float32, name="image")],
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative_dataset():  # type: ignore[no-untyped-def]
            for img in calib:
                yield [img[None].astype(np.float32)]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        data = converter.convert()
    out.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.quantize", description="int8 conversion worker (used by convert-model)")
    p.add_argument("model", type=Path)
    p.add_argument("calib", type=Path, help=".npy of uint8 images (N, H, W, C)")
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    convert(args.model, np.load(args.calib), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
