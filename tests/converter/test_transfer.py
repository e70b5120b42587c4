"""Transfer learning on real photos: the default recipe for photo datasets, against the edge CNN from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converter.convert import convert_model
from converter.data import load_dataset, stratified_sample, train_val
from converter.train import main as train_main
from converter.train import resolve_arch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_auto_picks_the_pretrained_recipe_for_photos_only(shared_datasets: Path) -> None:
    assert resolve_arch("auto", str(shared_datasets / "cats-vs-dogs.tar.gz")) == "efficientnet-lite0"
    assert resolve_arch("auto", "cifar10") == "edge"
    assert resolve_arch("paper", str(shared_datasets / "cats-vs-dogs.tar.gz")) == "paper"


@pytest.fixture(scope="module")
def runs(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 30 photos a class, 96 px: the default recipe (no --arch) and the edge CNN from scratch."""
    data = str(shared_datasets / "cats-vs-dogs.tar.gz")
    common = ["--data", data, "--limit-per-class", "30", "--image-size", "96", "-q"]
    out = {"pretrained": tmp_path_factory.mktemp("pretrained"), "scratch": tmp_path_factory.mktemp("scratch")}
    assert train_main([*common, "--out", str(out["pretrained"])]) == 0
    assert train_main([*common, "--arch", "edge", "--epochs", "4", "--widths", "32,64,64", "--out", str(out["scratch"])]) == 0
    return out


def test_transfer_beats_the_cnn_from_scratch_on_a_small_set(runs: dict[str, Path]) -> None:
    pre = json.loads((runs["pretrained"] / "train_report.json").read_text())
    scratch = json.loads((runs["scratch"] / "train_report.json").read_text())
    assert pre["arch"] == "efficientnet-lite0" and pre["transfer"]["pretrained"] and pre["train_images"] == 60
    assert pre["transfer"]["weights"].startswith("ImageNet")
    assert pre["val_images"] == scratch["val_images"] == 200  # the same carve of real photos
    assert pre["val_accuracy"] >= 0.78, pre["val_accuracy"]  # from 60 photos (measured 0.835-0.86)
    assert pre["val_accuracy"] >= scratch["val_accuracy"] + 0.15, (pre["val_accuracy"], scratch["val_accuracy"])
    assert (runs["pretrained"] / "labels.txt").read_text().split() == ["cat", "dog"]


def test_pretrained_model_converts_to_int8_that_agrees_with_float(runs: dict[str, Path], shared_datasets: Path, tmp_path: Path) -> None:
    train, val = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (96, 96))
    train = train.subset(stratified_sample(train.y, 30))
    res = convert_model(runs["pretrained"] / "model.keras", train, val, tmp_path / "bundle", calib_images=60, eval_limit=100, max_drop=3.0)
    acc = res.manifest["accuracy"]
    assert acc["agreement"] >= 0.95 and acc["float"] - acc["int8"] <= 0.03, acc
    assert res.manifest["arch"] == "efficientnet-lite0" and res.manifest["edgetpu"]["compatible"], res.manifest["edgetpu"]
    assert res.manifest["input"]["height"] == 96 and res.manifest["macs"] > 50e6


def test_held_out_photos_from_the_test_split(runs: dict[str, Path], shared_datasets: Path) -> None:
    """Photos of the archive's own test split (never seen): the head trained on 60 photos still sorts them."""
    import keras

    test = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "test", image_size=(96, 96))
    test = test.subset(stratified_sample(test.y, 50, seed=3))
    model = keras.models.load_model(runs["pretrained"] / "model.keras", compile=False)
    acc = float(np.mean(model.predict(test.x.astype(np.float32), verbose=0).argmax(1) == test.y))
    assert acc >= 0.75, acc  # measured 0.83 (100 photos; 0.86 on the 200-photo carve)


def test_fine_tuning_trains_the_top_blocks_only_with_batch_norm_frozen(shared_datasets: Path) -> None:
    from converter.transfer import TransferConfig, train_transfer

    train, val = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (64, 64))
    train, val = train.subset(stratified_sample(train.y, 8)), val.subset(stratified_sample(val.y, 8))
    cfg = TransferConfig(epochs=2, fine_tune=1, fine_tune_epochs=1)
    model, report = train_transfer(cfg, train, val, verbose=0)
    from converter.backbones import build_backbone

    before = build_backbone("efficientnet-lite0", (64, 64, 3)).model  # the ImageNet weights it started from
    changed = {layer.name for layer in before.layers if layer.weights and any(
        not np.array_equal(a, b) for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True))}
    assert report["fine_tune_layers"] == 4  # blocks_15's expand, depthwise and project convs, and the head conv
    assert changed == {"blocks_15_expand_conv", "blocks_15_depthwise_conv", "blocks_15_project_conv", "conv_head"}, changed
    assert "fine_tune_accuracy" in report["history"]
