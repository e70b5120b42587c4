"""evaluate-model on real models and real held-out images, through the device app's LiteRT code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset
from converter.evaluation.evaluate import KerasRunner, TFLiteRunner, confusion_text, evaluate, tflite_predict, tta_scores


def test_tflite_evaluation_matches_direct_inference(default_model: Path, cifar10_val: Dataset) -> None:
    data = cifar10_val.subset(np.arange(0, len(cifar10_val), 25))  # 200 real held-out images
    ev = evaluate(TFLiteRunner(default_model), data, latency_runs=20)
    direct = np.argmax(tflite_predict(default_model / "model.tflite", data.x), 1)
    assert ev.accuracy == pytest.approx(float(np.mean(direct == data.y)))
    assert ev.confusion.sum() == len(data) and np.trace(ev.confusion) == int(np.sum(direct == data.y))
    assert ev.confusion.sum(1).tolist() == np.bincount(data.y, minlength=10).tolist()
    for i in range(10):  # recall is the diagonal over the row
        assert ev.recall[i] == pytest.approx(ev.confusion[i, i] / ev.confusion[i].sum())
    assert ev.latency_ms["mean"] > 0 and ev.latency_ms["p50"] <= ev.latency_ms["p95"]
    text = confusion_text(ev)
    assert text.splitlines()[2].split()[0] == "airplane"


def test_keras_and_tflite_evaluations_agree(tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset]) -> None:
    run, report = tiny_edge_run
    _, val = fmnist_small
    ev = evaluate(KerasRunner(run / "model.keras"), val, latency_runs=5)
    assert ev.accuracy == pytest.approx(report["val_accuracy"])


def test_cli_writes_json_text_and_png(default_model: Path, tmp_path: Path, shared_datasets: Path) -> None:
    data = shared_datasets / "cifar10-train.tar.gz"
    proc = subprocess.run([sys.executable, "-m", "converter.cli.evaluate", str(default_model), "--data", str(data), "--limit", "300",
                           "--out", str(tmp_path), "--json", "--tta"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert printed["accuracy"] == saved["accuracy"] and saved["images"] == 300
    assert saved["tta_views"] == 6 and 0.7 < saved["tta_accuracy"] <= 1.0
    assert set(saved["per_class"]) == set((default_model / "labels.txt").read_text().split())
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "true \\ predicted" in (tmp_path / "confusion.txt").read_text()


def test_cli_rejects_a_model_for_other_images(default_model: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "converter.cli.evaluate", str(default_model), "--data", "fashion-mnist", "--split", "test",
                           "--limit", "50"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "labels" in proc.stderr.strip().splitlines()[-1]


def test_tta_weighs_the_six_views_as_airbench_does(default_model: Path, cifar10_val: Dataset) -> None:
    runner = TFLiteRunner(default_model)
    data = cifar10_val.subset(np.arange(0, len(cifar10_val), 10))  # 500 real held-out images
    scores = tta_scores(runner, data.x)
    img = data.x[7]
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [img, pad[:32, :32], pad[2:, 2:]]
    pairs = [0.5 * runner.predict_one(np.ascontiguousarray(v)) + 0.5 * runner.predict_one(np.ascontiguousarray(v[:, ::-1])) for v in views]
    np.testing.assert_allclose(scores[7], 0.5 * pairs[0] + 0.25 * pairs[1] + 0.25 * pairs[2], atol=1e-6)
    single = float(np.mean(np.argmax(runner.predict(data.x), 1) == data.y))
    assert float(np.mean(np.argmax(scores, 1) == data.y)) >= single - 0.01  # six views do not lose to one
