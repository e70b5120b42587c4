"""Transfer learning on real photos: the default recipe for photo datasets, against the edge CNN from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.cli.train import main as train_main
from converter.cli.train import resolve_arch
from converter.data.datasets import stratified_sample, train_val
from edge_app.model import default_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_auto_picks_the_pretrained_recipe_for_photos_only(shared_datasets: Path) -> None:
    assert resolve_arch("auto", str(shared_datasets / "cats-vs-dogs.tar.gz")) == "efficientnet-lite0"
    assert resolve_arch("auto", "cifar10") == "edge"
    assert resolve_arch("paper", str(shared_datasets / "cats-vs-dogs.tar.gz")) == "paper"


@pytest.fixture(scope="module")
def runs(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 20 photos a class (issue 34's few-photo case), 96 px: the default recipe (no --arch), which ``few_photos``
    also converts, and the edge CNN from scratch."""
    data = str(shared_datasets / "cats-vs-dogs.tar.gz")
    common = ["--data", data, "--limit-per-class", "20", "--image-size", "96", "-q"]
    out = {"pretrained": tmp_path_factory.mktemp("pretrained"), "scratch": tmp_path_factory.mktemp("scratch")}
    assert train_main([*common, "--out", str(out["pretrained"])]) == 0
    assert train_main([*common, "--arch", "edge", "--epochs", "4", "--widths", "32,64,64", "--out", str(out["scratch"])]) == 0
    return out


def test_transfer_beats_the_cnn_from_scratch_on_a_small_set(runs: dict[str, Path]) -> None:
    pre = json.loads((runs["pretrained"] / "train_report.json").read_text())
    scratch = json.loads((runs["scratch"] / "train_report.json").read_text())
    assert pre["arch"] == "efficientnet-lite2" and pre["transfer"]["pretrained"] and pre["train_images"] == 40  # --arch auto: few photos
    assert pre["transfer"]["weights"].startswith("ImageNet")
    assert pre["val_images"] == scratch["val_images"] == 200  # the same carve of real photos
    assert pre["val_accuracy"] >= 0.78, pre["val_accuracy"]  # from 40 photos (measured 0.90 on 2026-12-08; from scratch 0.505)
    assert pre["val_accuracy"] >= scratch["val_accuracy"] + 0.15, (pre["val_accuracy"], scratch["val_accuracy"])
    assert (runs["pretrained"] / "labels.txt").read_text().split() == ["cat", "dog"]


def test_retrain_model_converts_a_collect_folder_to_a_checked_int8_candidate(shared_datasets: Path, tmp_path: Path) -> None:
    """retrain-model on a collect folder (train/<class>/ of the same 60 photos): an int8 bundle that agrees with its float model."""
    from converter.cli.retrain import main as retrain_main

    train, _ = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (96, 96))
    train = train.subset(stratified_sample(train.y, 30))
    folder = tmp_path / "collect"
    for i, (img, y) in enumerate(zip(train.x, train.y, strict=True)):
        (folder / "train" / train.classes[y]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "train" / train.classes[y] / f"{i:03d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert retrain_main([str(folder), "--current", str(default_model_dir("cats-vs-dogs")), "--image-size", "96", "-q"]) == 0
    report = json.loads((folder / "candidate" / "retrain_report.json").read_text())
    manifest = json.loads((folder / "candidate" / "manifest.json").read_text())
    acc = manifest["accuracy"]
    assert acc["agreement"] >= 0.9 and acc["float"] - acc["int8"] <= 0.1, acc  # 12 held-out photos
    # so small a carve: agreement (no labels needed) is also counted on the 48 training photos; the paired test stays on the 12
    assert (acc["images"], acc["agreement_images"], acc["agreement_training_photos"]) == (12, 60, 48), acc
    assert manifest["arch"] == "efficientnet-lite0" and manifest["edgetpu"]["compatible"], manifest["edgetpu"]
    assert manifest["input"]["height"] == 96 and manifest["macs"] > 50e6 and len(manifest["sha256"]) == 64
    assert report["val_images"] == 12 and set(report["recall"]) == {"cat", "dog"} and report["val_accuracy"]["int8"] >= 0.75
    assert 0 <= report["current"]["disagreement"] <= 0.5 and report["current"]["new_classes"] == []
    # the review page serves that report to the browser before anyone deploys the candidate
    from starlette.testclient import TestClient

    from edge_app.review import create_app

    served = TestClient(create_app(folder, "t0ken")).get("/api/candidate", headers={"Authorization": "Bearer t0ken"})
    assert served.status_code == 200
    body = served.json()  # the report as written, with the line the review and models pages show beside it
    assert body.pop("comparison") == f"disagrees with the current model on {report['current']['disagreement'] * 100:.1f} % of 12 images", body
    assert body == report


def test_fine_tuning_trains_the_top_blocks_only_with_batch_norm_frozen(shared_datasets: Path) -> None:
    from converter.training.transfer import TransferConfig, train_transfer

    train, val = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (64, 64))
    train, val = train.subset(stratified_sample(train.y, 8)), val.subset(stratified_sample(val.y, 8))
    cfg = TransferConfig(epochs=2, fine_tune=1, fine_tune_epochs=1)
    model, report = train_transfer(cfg, train, val, verbose=0)
    from converter.models.backbones import build_backbone

    before = build_backbone("efficientnet-lite0", (64, 64, 3)).model  # the ImageNet weights it started from
    changed = {layer.name for layer in before.layers if layer.weights and any(
        not np.array_equal(a, b) for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True))}
    assert report["fine_tune_layers"] == 4  # blocks_15's expand, depthwise and project convs, and the head conv
    assert changed == {"blocks_15_expand_conv", "blocks_15_depthwise_conv", "blocks_15_project_conv", "conv_head"}, changed
    assert "fine_tune_accuracy" in report["history"]


@pytest.fixture(scope="module")
def few_photos(runs: dict[str, Path], shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], dict[str, object], float]:
    """Issue 34: 20 real photos a class with the default flags (96 px to stay fast; ``runs["pretrained"]``), converted to
    int8, and the int8 model on 200 photos of the archive's own test split: (train report, manifest, int8 test accuracy)."""
    from converter.cli.convert import main as convert_main
    from converter.data.datasets import load_dataset
    from converter.evaluation.evaluate import evaluate, open_runner

    data = str(shared_datasets / "cats-vs-dogs.tar.gz")
    run, out = runs["pretrained"], tmp_path_factory.mktemp("few-photos")
    assert convert_main([str(run / "model.keras"), "--data", data, "--out", str(out / "bundle"), "--eval-limit", "100", "-q"]) == 0
    test = load_dataset(data, "test", (96, 96))
    test = test.subset(stratified_sample(test.y, 100, seed=3))
    acc = evaluate(open_runner(out / "bundle" / "model.tflite"), test, "test", latency_runs=1).accuracy
    return (json.loads((run / "train_report.json").read_text()), json.loads((out / "bundle" / "manifest.json").read_text()), acc)


def test_few_photos_get_the_logistic_head_and_convert_to_an_accurate_int8_model(few_photos: tuple[dict, dict, float]) -> None:
    report, manifest, test_int8 = few_photos
    assert report["train_images"] == 40 and report["transfer"]["head"] == "logreg"
    assert report["transfer"]["feature_views"] == 2  # plain and mirror: more crops did not help beyond the draws' spread
    assert 1e-4 <= report["transfer"]["head_C"] <= 10
    assert manifest["accuracy"]["agreement"] >= 0.9, manifest["accuracy"]  # int8 against float on 100 held-out photos
    assert manifest["bias_correction"]["applied"] and manifest["bias_correction"]["layers"] >= 49  # a transfer model: auto corrects every conv + batch norm
    assert test_int8 >= FEW_PHOTOS_FLOOR, test_int8  # 200 held-out test photos


FEW_PHOTOS_FLOOR = 0.85


def test_few_photos_are_scored_by_repeated_kfold_with_a_confidence_interval(few_photos: tuple[dict, dict, float]) -> None:
    report, manifest, test_int8 = few_photos
    cv = report["cross_validation"]
    assert report["scored_by"] == "cross-validation" and report["transfer"]["cross_validation"] == cv
    assert cv["photos"] == 40 and cv["folds"] == 5 and cv["repeats"] == 3 and len(cv["repeat_accuracy"]) == 3
    lo, hi = cv["ci95"]
    assert 0 <= lo <= cv["accuracy"] <= hi <= 1 and 0.05 < hi - lo < 0.4, cv  # 40 photos: a wide interval, honestly
    assert "cross-validation" in cv["method"] and cv["ci"].startswith("Wilson")
    assert abs(cv["accuracy"] - test_int8) <= 0.15, (cv, test_int8)  # the estimate tracks the held-out score
    # nested: each of the 15 outer training folds chose its own C; the bundle's manifest says how the model was scored
    assert cv["nested"] is True and len(cv["fold_C"]) == 15 and set(cv["fold_C"]) <= set(cv["C_grid"]), cv
    score = manifest["training_score"]
    assert score["scored_by"] == "cross-validation", score
    assert {k: score[k] for k in ("accuracy", "ci95", "method", "folds", "repeats", "photos")} == {
        k: cv[k] for k in ("accuracy", "ci95", "method", "folds", "repeats", "photos")}
    lo, hi = manifest["accuracy"]["int8_ci95"]
    assert lo <= manifest["accuracy"]["int8"] <= hi and manifest["accuracy"]["ci"].startswith("Wilson")
