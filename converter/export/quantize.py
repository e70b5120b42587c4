"""Full-integer int8 TFLite conversion of a Keras model (uint8 in, uint8 out, batch of 1).

``quantize_model`` runs the conversion in a fresh Python process (``python -m converter.cli.quantize_worker``):
every ``TFLiteConverter.convert()`` leaks memory, and a crash in the converter must not take the
calling command with it. The model is exported through a SavedModel signature with a static
``[1, H, W, C]`` input (``keras.export.ExportArchive``), as the Edge TPU compiler requires.
Normalisation lives inside the model (a ``Rescaling`` layer), so the representative data is raw
pixels in 0..255 and the quantised input takes raw uint8 pixels (scale 1, zero point 0).
The calibration images reach the worker as a ``.npy`` written batch by batch, which the worker reads
memory-mapped, one image at a time: neither process holds the decoded calibration set.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from converter.errors import ModelError, QuantizationError

log = logging.getLogger(__name__)


class ImageBatches(Protocol):
    """Images read in bounded batches (``converter.data.datasets.Rows`` or ``Dataset``)."""

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    def __len__(self) -> int: ...

    def batches(self, size: int = ...) -> Iterator[np.ndarray]: ...


def write_npy(path: Path, shape: tuple[int, ...], batches: Iterable[np.ndarray]) -> int:
    """A uint8 ``.npy`` of ``shape`` written batch by batch (never the whole array in memory); the images written."""
    n = 0
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
        for batch in batches:
            if batch.shape[1:] != shape[1:]:
                raise QuantizationError(f"calibration images of shape {batch.shape[1:]}, expected {shape[1:]}")
            fh.write(np.ascontiguousarray(batch, dtype=np.uint8).tobytes())
            n += len(batch)
    if n != shape[0]:
        raise QuantizationError(f"{n} calibration images written, {shape[0]} expected")
    return n


def quantize_model(model_path: Path, representative: np.ndarray | ImageBatches, out: Path, timeout_s: float = 1800.0) -> Path:
    """Write ``out`` (.tflite, int8 with uint8 I/O) from ``model_path`` (.keras), in a subprocess.

    ``representative``: raw uint8 images ``(N, H, W, C)`` used to calibrate the activations (200-500 training images is
    the usual amount), an array or rows read in batches (``Rows``), in that order.
    """
    if not model_path.exists():
        raise ModelError(f"model not found: {model_path}; pass a .keras file written by train-model")
    if isinstance(representative, np.ndarray):
        if representative.ndim != 4 or len(representative) == 0:
            raise QuantizationError(f"representative data must be a non-empty (N, H, W, C) array, got shape {representative.shape}")
        shape: tuple[int, ...] = representative.shape
        batches: Iterable[np.ndarray] = [representative]
    else:
        if len(representative) == 0:
            raise QuantizationError("representative data must hold at least one image, got none")
        shape, batches = (len(representative), *representative.image_shape), representative.batches()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        calib = Path(tmp) / "calib.npy"
        write_npy(calib, shape, batches)
        cmd = [sys.executable, "-m", "converter.cli.quantize_worker", str(model_path), str(calib), str(out)]
        log.info("quantising %s to int8 on %d calibration images", model_path, shape[0])
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
    """The conversion itself (runs in the worker process; imports TensorFlow). ``calib`` may be memory-mapped: the
    representative dataset reads it one image at a time."""
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
