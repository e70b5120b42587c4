"""int8 conversion of a really trained model, checked against the float model on held-out images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from converter.convert import convert_model, edgetpu_report
from converter.data import Dataset
from converter.errors import DataError, QuantizationError
from converter.evaluate import tflite_predict
from edge_app.model import Classifier, resolve_model


@pytest.fixture(scope="module")
def bundle(tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run, _ = tiny_edge_run
    train, val = fmnist_small
    out = tmp_path_factory.mktemp("bundle")
    convert_model(run / "model.keras", train, val, out, calib_images=200, max_drop=2.0)
    return out


def test_int8_model_agrees_with_the_float_model(bundle: Path, tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset]) -> None:
    run, _ = tiny_edge_run
    _, val = fmnist_small
    model = keras.models.load_model(run / "model.keras", compile=False)
    float_pred = np.argmax(model.predict(val.x, verbose=0), 1)
    scores = tflite_predict(bundle / "model.tflite", val.x)
    assert scores.shape == (len(val), 10)
    assert np.allclose(scores.sum(1), 1.0, atol=0.05)  # dequantised probabilities
    assert np.mean(np.argmax(scores, 1) == float_pred) > 0.9
    acc_q = float(np.mean(np.argmax(scores, 1) == val.y))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["accuracy"]["int8"] == pytest.approx(acc_q, abs=1e-4)
    assert manifest["accuracy"]["float"] - acc_q <= 0.02


def test_bundle_is_full_int8_with_uint8_io_and_a_complete_manifest(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["format"] == "edge-recognition/1"
    assert m["input"] == {"height": 28, "width": 28, "channels": 1, "color_order": "GRAY", "dtype": "uint8", "scale": 1.0, "zero_point": 0}
    assert m["output"]["dtype"] == "uint8" and m["output"]["kind"] == "probabilities"
    assert m["classes"] == (bundle / "labels.txt").read_text().split("\n")[:10]
    assert m["size_bytes"] == (bundle / "model.tflite").stat().st_size
    assert {"tensorflow", "keras"} <= set(m["tools"]) or {"tensorflow-cpu", "keras"} <= set(m["tools"])
    report = edgetpu_report(bundle / "model.tflite")
    assert report.compatible, report.problems
    assert "CONV_2D" in report.ops and "FULLY_CONNECTED" in report.ops
    assert m["edgetpu"]["compatible"] is True
    assert set(m["decode"]["agreement"]) == {"2", "4", "8"} and m["decode"]["cover"] >= 1.0  # how far --decode reduced may go
    assert m["decode"]["content"] == "validation images" and m["decode"]["images"] >= 100


def test_the_device_app_loads_the_bundle(bundle: Path, fmnist_small: tuple[Dataset, Dataset]) -> None:
    import cv2

    _, val = fmnist_small
    clf = Classifier(resolve_model(bundle))
    assert clf.labels == list(val.classes)
    # a BGR camera-like frame of a real image, upscaled: same answer as the raw image
    img = val.x[0]
    frame = cv2.cvtColor(cv2.resize(img, (280, 280), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    direct = int(np.argmax(tflite_predict(bundle / "model.tflite", val.x[:1])[0]))
    assert clf.classify(frame, k=1)[0].id == direct


def test_a_float_op_model_is_not_edgetpu_compatible(tmp_path: Path) -> None:
    import tensorflow as tf

    inp = keras.Input((8, 8, 1), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    path = tmp_path / "float.tflite"
    path.write_bytes(conv.convert())
    report = edgetpu_report(path)
    assert not report.compatible
    assert any("float32" in p for p in report.problems)


def test_refuses_an_int8_model_that_loses_accuracy(
    tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    run, _ = tiny_edge_run
    train, val = fmnist_small
    # a limit no int8 model can meet (it would have to beat the float model by 100 points)
    with pytest.raises(QuantizationError, match="--allow-drop"):
        convert_model(run / "model.keras", train, val, tmp_path / "out", calib_images=20, max_drop=-100.0)
    assert not (tmp_path / "out" / "model.tflite").exists()


def test_shape_mismatch_is_a_clear_error(tiny_edge_run: tuple[Path, dict[str, object]], cifar10_val: Dataset, tmp_path: Path) -> None:
    run, _ = tiny_edge_run
    with pytest.raises(DataError, match="28x28x1 images but the data is 32x32x3"):
        convert_model(run / "model.keras", cifar10_val, cifar10_val, tmp_path)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a model")
    proc = subprocess.run([sys.executable, "-m", "converter.convert", str(bad), "--data", "fashion-mnist", "--out", str(tmp_path / "o"),
                           "--eval-limit", "100"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("convert-model: error: cannot load")


def test_quiet_conversion_prints_only_its_result(tiny_edge_run: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    """-q: no TensorFlow or LiteRT chatter (deprecation warnings, delegate INFO lines), only the JSON summary on stdout."""
    run, _ = tiny_edge_run
    proc = subprocess.run(
        [sys.executable, "-m", "converter.convert", str(run / "model.keras"), "--data", "fashion-mnist", "--out", str(tmp_path / "q"), "-q", "--allow-drop"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert json.loads(proc.stdout)["out"] == str(tmp_path / "q")
