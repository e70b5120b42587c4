"""evaluate-model on real models and real held-out images, through the device app's LiteRT code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset
from converter.evaluation.evaluate import KerasRunner, TFLiteRunner, confusion_text, evaluate, report_text, tflite_predict, tta_scores


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


def test_accuracy_comes_with_its_wilson_interval_and_a_small_set_flag(default_model: Path, cifar10_val: Dataset) -> None:
    """500 real images of the carve (seen in training by the shipped model), 50 a class: an interval, no flag; 10 a class:
    flagged, with the interval's half width."""
    from converter.data.datasets import stratified_sample
    from converter.evaluation.cross_validation import wilson

    big = evaluate(TFLiteRunner(default_model), cifar10_val.subset(stratified_sample(cifar10_val.y, 50, seed=2)), latency_runs=2)
    lo, hi = wilson(round(big.accuracy * 500), 500)
    doc = big.to_json()
    assert doc["images"] == 500 and doc["accuracy_ci95"] == [round(lo, 4), round(hi, 4)] and lo < big.accuracy < hi
    assert doc["smallest_class_images"] == 50 and doc["small_set"] is False and "small set" not in report_text(big)
    assert 0.005 < hi - lo < 0.1 and doc["ci"].startswith("Wilson")
    small = evaluate(TFLiteRunner(default_model), cifar10_val.subset(stratified_sample(cifar10_val.y, 10, seed=2)), latency_runs=2)
    doc = small.to_json()
    assert doc["small_set"] is True and doc["smallest_class_images"] == 10 and doc["images"] == 100
    assert doc["margin_points"] == round((doc["accuracy_ci95"][1] - doc["accuracy_ci95"][0]) * 50, 1) and 1 < doc["margin_points"] < 15
    assert f"small set: ±{doc['margin_points']:.1f} points" in report_text(small)
    # the shipped CIFAR-10 bundle was trained on every image: its manifest says nothing was held out
    assert doc["training_score"]["scored_by"] == "not scored" and doc["training_score_from"] == str(default_model / "manifest.json")


def test_cli_gives_the_bundles_training_score_and_flags_a_small_set(shared_datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate-model on the shipped dogs-vs-cats bundle and 40 real test photos: interval, flag and training score, in
    the text report and in --json."""
    from converter.cli.evaluate import main
    from edge_app.model import default_model_dir

    bundle = default_model_dir("cats-vs-dogs")
    args = [str(bundle), "--data", str(shared_datasets / "cats-vs-dogs.tar.gz"), "--split", "test", "--limit", "40", "-q"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    lo, hi = doc["accuracy_ci95"]
    assert doc["images"] == 40 and lo <= doc["accuracy"] <= hi and doc["small_set"] is True and doc["smallest_class_images"] == 20
    assert f"accuracy {doc['accuracy']:.4f} (95 % CI {lo:.4f}-{hi:.4f}, Wilson, 40 images)" in text
    assert f"small set: ±{doc['margin_points']:.1f} points (the smallest class has 20 images" in text
    manifest = json.loads((bundle / "manifest.json").read_text())
    score = doc["training_score"]
    assert doc["training_score_from"] == str(bundle / "manifest.json")
    if "training_score" in manifest:  # a bundle converted since convert-model records it
        assert score == manifest["training_score"]
    else:  # the shipped bundle predates it: its carve's accuracy, said to be of unrecorded size
        assert score["scored_by"] == "validation carve" and score["accuracy"] == manifest["training"]["val_accuracy"] and "ci95" not in score
    assert f"training score: {score['scored_by']}: {score['accuracy']:.4f}" in text


def test_a_keras_model_gives_the_score_in_its_train_report(tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset]) -> None:
    run, report = tiny_edge_run
    ev = evaluate(KerasRunner(run / "model.keras"), fmnist_small[1], latency_runs=2)
    score = ev.to_json()["training_score"]
    assert ev.training_score_from == str(run / "train_report.json")
    assert score["scored_by"] == "validation carve" and score["images"] == report["val_images"] == 500
    assert score["accuracy"] == round(float(report["val_accuracy"]), 4) and score["ci95"][0] < score["accuracy"] < score["ci95"][1]
