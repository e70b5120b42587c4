"""``convert-model``: a Keras model to a checked, full-integer int8 TFLite bundle for the device.

``convert-model runs/edge/model.keras --data cifar10-train.tar.gz --out models/cifar10`` writes
``model.tflite`` (uint8 in/out, batch 1, with standard TFLite metadata from ``converter.export.metadata``:
labels and input normalisation, for MediaPipe Tasks), ``labels.txt`` and ``manifest.json``;
``model_edgetpu.tflite`` too when ``edgetpu_compiler`` is on PATH. The int8 model is checked against the float model on the same
held-out images (:func:`int8_check`) and refused, unless ``--allow-drop``, when it is significantly worse (an exact one-sided
McNemar test on the images only one of the two gets right, p < ``--alpha``) or their top-1 answers agree on fewer than
``--min-agreement`` of the images (a carve under ``AGREEMENT_IMAGES``: agreement, which needs no labels, is counted on
training photos too). The model path is checked (it exists and loads as a Keras model) before any data is read.

Memory: the calibration and validation images are read in batches of ``BATCH`` (``converter.data.datasets.Rows`` over
the memory-mapped dataset), so the peak does not grow with the size of the training set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import BATCH, Dataset, Rows, stratified_sample
from converter.errors import DataError, ModelError, QuantizationError
from converter.evaluation import decode_check
from converter.evaluation.cross_validation import CI_NAME, interval, training_score
from converter.evaluation.evaluate import TFLiteRunner, keras_predict
from converter.evaluation.report import library_versions
from converter.export.bias_correction import BiasCorrection, correct_weight_bias
from converter.export.quantize import quantize_model
from edge_app.model import MANIFEST_FORMAT, make_interpreter

log = logging.getLogger(__name__)

# Operations the Edge TPU compiler maps to the TPU (coral.ai/docs/edgetpu/models-intro, "Supported operations").
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXP",
    "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MAXIMUM", "MUL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
    "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
INT_TYPES = ("int8", "uint8", "int32")
ALPHA = 0.05  # int8 is refused when significantly worse than float at this level (one-sided)
MIN_AGREEMENT = 0.97  # ... or when the two agree on fewer of the held-out images than this
AGREEMENT_IMAGES = 200  # a carve smaller than this: agreement (which needs no labels) is also counted on up to this many training photos
BIAS_CORRECTION = ("auto", "on", "off")  # convert-model --bias-correction
DECODE_LIMIT = 1000  # decode_check.measure's default limit: the images it checks reduced decoding on


# --------------------------------------------------------------------------- the int8 check


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the exact one-sided McNemar p-value of ``k`` of ``n`` discordant pairs."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    try:
        from scipy.stats import binomtest  # noqa: PLC0415 - scikit-learn's dependency, so normally there
    except ImportError:
        return float(Fraction(sum(math.comb(n, i) for i in range(k, n + 1)), 2**n))
    return float(binomtest(k, n, 0.5, alternative="greater").pvalue)


def binomial_below(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): how likely ``k`` or fewer agreeing answers of ``n`` are at a true rate ``p``."""
    if k >= n:
        return 1.0
    if k < 0:
        return 0.0
    try:
        from scipy.stats import binomtest  # noqa: PLC0415
    except ImportError:
        return float(min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))))
    return float(binomtest(k, n, p, alternative="less").pvalue)


@dataclass(frozen=True)
class Int8Check:
    """The int8 model against the float model on the same images: a paired test, not a difference of two accuracies.

    Only the discordant images carry information: ``float_only`` (float right, int8 wrong) and ``int8_only`` (the
    reverse). Were int8 no worse, each discordant image would go either way with probability 1/2; ``p_value`` is the
    chance of at least ``float_only`` of them going float's way (exact McNemar test, one-sided). 3 of 3 on 294 images
    (int8 1.02 points lower) is p = 0.125: no evidence that int8 is worse.
    """

    images: int
    float_correct: int
    int8_correct: int
    float_only: int
    int8_only: int
    agreement: float  # top-1 answers equal, right or wrong, on ``agreement_images``
    p_value: float
    alpha: float = ALPHA
    min_agreement: float = MIN_AGREEMENT
    agreement_images: int = 0  # the images agreement is counted on: the held-out ones and any unlabelled extra (0: ``images``)
    training_photos: int = 0  # of those, training photos (agreement needs no held-out labels)

    @property
    def significantly_worse(self) -> bool:
        return self.p_value < self.alpha

    @property
    def agreement_p_value(self) -> float:
        """How likely this few agreeing answers are if int8 and float really agree on ``min_agreement`` of all images."""
        n = self.agreement_images or self.images
        return binomial_below(round(self.agreement * n), n, self.min_agreement)

    @property
    def agreement_too_low(self) -> bool:
        """Agreement significantly below the floor (one-sided binomial test at ``alpha``): on a handful of images one
        changed answer is no evidence (9 of 10 against a 97 % floor: p = 0.26), on thousands a shortfall is."""
        return self.agreement < self.min_agreement - 1e-12 and self.agreement_p_value < self.alpha

    @property
    def acceptable(self) -> bool:
        return not (self.significantly_worse or self.agreement_too_low)

    def problems(self) -> list[str]:
        out = []
        if self.significantly_worse:
            out.append(f"int8 is significantly worse than float (float right and int8 wrong on {self.float_only} images, the reverse on "
                       f"{self.int8_only}: exact McNemar p = {self.p_value:.2g} < {self.alpha:g})")
        if self.agreement_too_low:
            out.append(f"int8 and float give the same answer on only {self.agreement:.1%} of {self.agreement_images or self.images} images "
                       f"(at least {self.min_agreement:.0%} needed; "
                       f"binomial p = {self.agreement_p_value:.2g} < {self.alpha:g})")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "float_right_int8_wrong": self.float_only,
            "int8_right_float_wrong": self.int8_only,
            "p_value": round(self.p_value, 4),
            "test": "exact McNemar, one-sided",
            "alpha": self.alpha,
            "min_agreement": self.min_agreement,
            "agreement_p_value": round(self.agreement_p_value, 4),
            "agreement_images": self.agreement_images or self.images,
            "agreement_training_photos": self.training_photos,
            "passed": self.acceptable,
        }


def tflite_io(model: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's ``input`` and ``output`` blocks for a converted model: size, colour order, dtype, quantisation."""
    interp = make_interpreter(model)
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    h, w, c = (int(d) for d in inp["shape"][1:])
    return (
        {"height": h, "width": w, "channels": c, "color_order": "RGB" if c == 3 else "GRAY",
         "dtype": np.dtype(inp["dtype"]).name, "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])},
        {"dtype": np.dtype(outp["dtype"]).name, "scale": float(outp["quantization"][0]), "zero_point": int(outp["quantization"][1]),
         "kind": "probabilities"},
    )


def write_bundle(out: Path, classes: Sequence[str], tpu: EdgeTpuReport) -> dict[str, Any]:
    """Beside ``out/model.tflite``: ``labels.txt``, and the Edge TPU model where it compiles; the manifest's head (format,
    file names, input and output blocks, classes), which every bundle's manifest starts with."""
    model = out / "model.tflite"
    (out / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    compiled = compile_edgetpu(model, out) if tpu.compatible else None
    model_in, model_out = tflite_io(model)
    return {"format": MANIFEST_FORMAT, "model": model.name, "edgetpu_model": compiled.name if compiled else None, "labels": "labels.txt",
            "input": model_in, "output": model_out, "classes": list(classes)}


def file_facts(model: Path) -> dict[str, Any]:
    """The manifest's ``size_bytes`` and ``sha256`` of the model file (``edge-app --model-url`` checks the hash)."""
    data = model.read_bytes()
    return {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def int8_check(labels: np.ndarray, float_pred: np.ndarray, int8_pred: np.ndarray, *, alpha: float = ALPHA,
               min_agreement: float = MIN_AGREEMENT, unlabelled: tuple[np.ndarray, np.ndarray] | None = None) -> Int8Check:
    """Compare the two models' top-1 predictions on the same labelled images (see :class:`Int8Check`).

    ``unlabelled``: the two models' predictions on more images (the training photos, when the held-out carve is small):
    counted in the agreement, which needs no labels, not in the paired accuracy test, which needs held-out ones.
    """
    labels, float_pred, int8_pred = (np.asarray(a).reshape(-1) for a in (labels, float_pred, int8_pred))
    if not len(labels) == len(float_pred) == len(int8_pred) or len(labels) == 0:
        raise ValueError(f"need the same non-zero number of labels and predictions, got {len(labels)}, {len(float_pred)}, {len(int8_pred)}")
    f_right, q_right = float_pred == labels, int8_pred == labels
    b, c = int(np.sum(f_right & ~q_right)), int(np.sum(q_right & ~f_right))
    extra_f, extra_q = (np.asarray(a).reshape(-1) for a in unlabelled) if unlabelled is not None else (float_pred[:0], int8_pred[:0])
    if len(extra_f) != len(extra_q):
        raise ValueError(f"need as many float as int8 predictions on the unlabelled images, got {len(extra_f)} and {len(extra_q)}")
    same = np.concatenate([float_pred == int8_pred, extra_f == extra_q])
    return Int8Check(
        images=len(labels), float_correct=int(f_right.sum()), int8_correct=int(q_right.sum()), float_only=b, int8_only=c,
        agreement=float(np.mean(same)), p_value=binomial_tail(b, b + c), alpha=alpha, min_agreement=min_agreement,
        agreement_images=len(same), training_photos=len(extra_f),
    )


# --------------------------------------------------------------------------- Edge TPU


@dataclass
class EdgeTpuReport:
    compatible: bool
    ops: list[str]
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"compatible": self.compatible, "ops": self.ops, "problems": self.problems}


def edgetpu_report(path: Path) -> EdgeTpuReport:
    """Whether every op is int8 and on the Edge TPU's list and every shape is static.

    Read with LiteRT's interpreter (TensorFlow's ``tf.lite.Interpreter`` is deprecated and says so on stderr).
    """
    from ai_edge_litert import interpreter as litert  # noqa: PLC0415

    from edge_app.runtime import native_stderr_as_debug  # noqa: PLC0415

    with native_stderr_as_debug("litert"):
        interp = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    problems: list[str] = []
    ops = []
    for op in interp._get_ops_details():
        name = str(op["op_name"])
        ops.append(name)
        if name not in EDGETPU_OPS:
            problems.append(f"op {name} is not supported by the Edge TPU (it would run on the CPU)")
        for idx in [*op["inputs"], *op["outputs"]]:
            if idx < 0 or idx not in tensors:
                continue
            t = tensors[idx]
            dtype = np.dtype(t["dtype"]).name
            if dtype not in INT_TYPES:
                problems.append(f"tensor {t['name']} of {name} is {dtype}, not int8")
            if any(int(d) < 0 for d in t.get("shape_signature", t["shape"])):
                problems.append(f"tensor {t['name']} of {name} has a dynamic shape {list(t['shape_signature'])}")
    return EdgeTpuReport(not problems, sorted(set(ops)), sorted(set(problems)))


def compile_edgetpu(model: Path, out_dir: Path) -> Path | None:
    """Run ``edgetpu_compiler`` when installed; the compiled model's path, or None."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        log.info(
            "edgetpu_compiler not found: no Edge TPU model written. On x86-64 Debian/Ubuntu add Coral's apt repository "
            "(https://coral.ai/docs/edgetpu/compiler/), apt-get install edgetpu-compiler, and rerun convert-model"
        )
        return None
    proc = subprocess.run([compiler, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True, check=False)
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    if proc.returncode != 0 or not compiled.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        log.warning("edgetpu_compiler failed: %s", tail[-1] if tail else proc.returncode)
        return None
    log.info("wrote Edge TPU model %s", compiled)
    return compiled


# --------------------------------------------------------------------------- metadata


def add_metadata(model: Path, labels: list[str]) -> bool:
    """Embed standard TFLite metadata (labels, input normalisation) for MediaPipe Tasks and others.

    Written by ``converter.export.metadata`` (no MediaPipe needed); returns False and leaves the model
    untouched only when the flatbuffers schema code cannot be imported.
    """
    try:
        from converter.export.metadata import write_classifier_metadata  # noqa: PLC0415

        write_classifier_metadata(model, labels)
    except ImportError as exc:
        log.warning("no TFLite metadata written (%s): pip install flatbuffers ai-edge-litert", exc)
        return False
    return True


# --------------------------------------------------------------------------- the conversion


@dataclass
class ConvertResult:
    out: Path
    manifest: dict[str, Any]


def load_keras_model(path: Path) -> Any:
    """The Keras model at ``path``; a one-line :class:`ModelError` naming the path and what is expected otherwise."""
    expected = "the model.keras file written by train-model (in its --out folder)"
    if path.is_dir():
        hint = f": pass {path / 'model.keras'}" if (path / "model.keras").is_file() else f"; pass {expected}"
        raise ModelError(f"{path} is a folder, not a model{hint}")
    if not path.is_file():
        raise ModelError(f"model not found: {path}; pass {expected}")
    if path.suffix == ".tflite":
        raise ModelError(f"{path} is already a TFLite model; convert-model takes {expected}")
    import keras  # noqa: PLC0415

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load {path} as a Keras model ({reason}); pass {expected}") from exc


PREDICT_PIXELS = 1 << 19  # pixels a Keras batch: 10 photos at 224 px (a batch of 256 held over 3 GB of activations)


def predict_batch(image_shape: tuple[int, ...], most: int = BATCH) -> int:
    """The Keras batch size for images of ``image_shape``: ``most`` for small images (28 or 32 px), fewer for photos, so the
    model's activations stay a few hundred MB whatever the input size."""
    return max(1, min(most, PREDICT_PIXELS // max(1, int(image_shape[0]) * int(image_shape[1]))))


def streamed_predictions(model: Any, tflite: Path, val: Rows, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 of the float (Keras) and the int8 (TFLite) model on ``val``, read at most ``batch`` images at a time.

    Keras predicts in batches of :func:`predict_batch` images and TFLite one image at a time, so memory holds one batch of
    images and its activations, whatever the number of images.
    """
    runner = TFLiteRunner(tflite, None)
    keras_batch = predict_batch(val.image_shape, batch)
    read = keras_batch * max(1, min(batch, 4 * keras_batch) // keras_batch)  # whole Keras batches: 40 photos at 224 px
    float_pred: list[np.ndarray] = []
    int8_pred: list[np.ndarray] = []
    for x in val.batches(read):
        float_pred.append(np.argmax(keras_predict(model, x, batch_size=keras_batch), 1))
        int8_pred.append(np.argmax(runner.predict(x), 1))
    return np.concatenate(float_pred), np.concatenate(int8_pred)


def as_rows(data: Dataset | Rows) -> Rows:
    return data.rows() if isinstance(data, Dataset) else data


def convert_model(
    model_path: Path,
    train: Dataset | Rows,
    val: Dataset | Rows,
    out: Path,
    *,
    calib_per_class: int | None = None,
    calib_images: int = 300,
    eval_limit: int | None = None,
    alpha: float = ALPHA,
    min_agreement: float = MIN_AGREEMENT,
    allow_drop: bool = False,
    arch: str | None = None,
    seed: int = 0,
    model: Any = None,
    bias_correction: str = "auto",
) -> ConvertResult:
    """Quantise, check against the float model (:func:`int8_check`), and write the bundle into ``out``.

    ``bias_correction``: ``auto`` corrects the int8 weights' rounding bias (:mod:`converter.export.bias_correction`) for
    models trained from a pretrained backbone (their ``train_report.json`` has a ``transfer`` part), ``on`` for any model
    with convolution + batch norm pairs, ``off`` never. The int8 model is checked against the uncorrected float model.

    ``model``: ``model_path`` already loaded (``convert-model`` loads it before reading any data). ``train`` and ``val``:
    datasets, or rows of one (``train_val_rows``), whose images are read in bounded batches.
    """
    train, val = as_rows(train), as_rows(val)
    if model is None:
        model = load_keras_model(model_path)
    in_shape = tuple(int(d) for d in model.input_shape[1:])
    if in_shape != train.image_shape:
        raise DataError(
            f"the model takes {'x'.join(map(str, in_shape))} images but the data is {'x'.join(map(str, train.image_shape))}; "
            f"pass --image-size {in_shape[0]}x{in_shape[1]}"
        )
    n_out = int(model.output_shape[-1])
    if n_out != len(train.classes):
        raise DataError(f"the model has {n_out} outputs but the data has {len(train.classes)} classes ({', '.join(train.classes)})")

    per_class = calib_per_class or max(1, calib_images // len(train.classes))
    calib = train.subset(stratified_sample(train.y, per_class, seed))
    if eval_limit and eval_limit < len(val):
        val = val.subset(stratified_sample(val.y, max(1, eval_limit // len(val.classes)), seed))

    if bias_correction not in BIAS_CORRECTION:
        raise DataError(f"bias correction {bias_correction!r}: choose one of {', '.join(BIAS_CORRECTION)}")
    report_path = model_path.parent / "train_report.json"
    train_report = json.loads(report_path.read_text()) if report_path.exists() else {}
    correct = bias_correction == "on" or (bias_correction == "auto" and isinstance(train_report.get("transfer"), dict))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="convert-") as tmp:
        staged = Path(tmp) / "model.tflite"
        t0 = time.perf_counter()
        to_quantise, corrected = model_path, BiasCorrection(0, 0.0)
        if correct:
            copy = load_keras_model(model_path)  # a copy: the check compares with the float model as trained
            corrected = correct_weight_bias(copy, calib.batches(BATCH), batch=2)  # every conv's input map: 2 photos at a time
            if corrected.layers:
                to_quantise = Path(tmp) / "corrected.keras"
                copy.save(to_quantise)
                log.info("took the int8 weights' rounding bias off %d batch norms (mean |shift| %.4g)", corrected.layers, corrected.mean_shift)
            del copy
        quantize_model(to_quantise, calib, staged)
        convert_s = time.perf_counter() - t0

        float_pred, int8_pred = streamed_predictions(model, staged, val)
        unlabelled = None
        if len(val) < AGREEMENT_IMAGES and len(train):  # a small carve: count agreement on the training photos too
            photos = train if len(train) <= AGREEMENT_IMAGES else train.subset(stratified_sample(train.y, max(1, AGREEMENT_IMAGES // len(train.classes)), seed))
            unlabelled = streamed_predictions(model, staged, photos)
        check = int8_check(val.y, float_pred, int8_pred, alpha=alpha, min_agreement=min_agreement, unlabelled=unlabelled)
        acc_f, acc_q, agree = check.float_correct / check.images, check.int8_correct / check.images, check.agreement
        log.info("validation accuracy on %d images: float %.4f, int8 %.4f (same predictions on %.1f %% of %d images%s; float right and "
                 "int8 wrong on %d, the reverse on %d: one-sided exact McNemar p = %.3g)", len(val), acc_f, acc_q, agree * 100,
                 check.agreement_images, f", {check.training_photos} of them training photos" if check.training_photos else "",
                 check.float_only, check.int8_only, check.p_value)
        if not check.acceptable:
            problems = "; ".join(check.problems())
            if not allow_drop:
                raise QuantizationError(
                    f"{problems}, on {check.images} held-out images (float {acc_f:.4f}, int8 {acc_q:.4f}); nothing written. "
                    f"Calibrate on more images (--calib-images 500; this run used {len(calib)}), check on more images "
                    f"(--eval-limit, if set), or pass --allow-drop to write it anyway"
                )
            log.info("writing the int8 model anyway (--allow-drop; the manifest records it): %s", problems)
        decode_images, decode_labels = decode_sample(val, seed)
        decode = decode_check.measure(staged, decode_images, labels=decode_labels, seed=seed)  # how far --decode reduced may go for it
        del decode_images
        tpu = edgetpu_report(staged)
        has_metadata = add_metadata(staged, list(train.classes))
        shutil.copyfile(staged, out / "model.tflite")

    if not tpu.compatible:
        log.warning("not Edge TPU compatible: %s", "; ".join(tpu.problems))
    head = write_bundle(out, train.classes, tpu)
    manifest: dict[str, Any] = {
        **head,
        "dataset": train.name,
        "arch": arch or train_report.get("arch", "unknown"),
        "accuracy": {
            "float": round(acc_f, 4), "int8": round(acc_q, 4), "agreement": round(agree, 4),
            "images": len(val),
            "int8_ci95": interval(acc_q, len(val)), "ci": CI_NAME,  # 95 % interval of the int8 accuracy on these images
            **check.to_json(),  # the paired test the int8 model passed (or failed, written through --allow-drop)
            # a model trained on every image (train-model --val-fraction 0) has seen the carve: the numbers then check
            # the int8 conversion against the float model, they are not a held-out accuracy
            "split": "training (seen in training)" if train_report.get("val_images") == 0 else "validation",
        },
        "calibration_images": len(calib),
        "decode": decode,
        **file_facts(out / "model.tflite"),
        "params": int(model.count_params()),
        "macs": train_report.get("macs"),
        "training": {k: train_report[k] for k in ("train_images", "val_accuracy", "best_epoch", "train_seconds", "machine", "date", "config")
                     if k in train_report},
        # how train-model scored it (repeated k-fold cross-validation for small sets, else its carve), with a 95 % interval
        "training_score": training_score(train_report),
        "bias_correction": corrected.to_json(),
        "edgetpu": tpu.to_json(),
        "tflite_metadata": has_metadata,
        "convert_seconds": round(convert_s, 1),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {platform.system()}",
        "tools": library_versions(("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "edge-recognition")),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s (%d bytes, int8 accuracy %.4f)", out / "model.tflite", manifest["size_bytes"], acc_q)
    return ConvertResult(out, manifest)


def decode_sample(val: Rows, seed: int, limit: int = DECODE_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """The images (and labels) ``decode_check.measure`` keeps of ``val`` (its stratified pick of at most ``limit``),
    read alone: the same images as handing it all of them."""
    y = val.y
    pick = stratified_sample(y, max(1, limit // len(np.unique(y))), seed) if len(val) > limit else np.arange(len(val))
    return val.take(pick), y[pick]


def trained_size(model_path: Path) -> tuple[int, int] | None:
    """The input size ``train-model`` recorded beside the model (so --image-size can be left out), if any."""
    try:
        shape = json.loads((model_path.parent / "train_report.json").read_text())["input_shape"]
        return int(shape[0]), int(shape[1])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


__all__ = ["EDGETPU_OPS", "ConvertResult", "Int8Check", "convert_model", "edgetpu_report", "int8_check", "load_keras_model", "quantize_model"]
