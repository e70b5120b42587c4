"""Short real training runs: artefacts, the paper architecture, and bad arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from converter.cli.train import main
from converter.data.augment import cutout_batch
from converter.data.datasets import Dataset
from converter.models.cnn import EdgeSpec, count_macs, edge_cnn, paper_cnn


def test_tiny_edge_run_learns_and_writes_its_artefacts(tiny_edge_run: tuple[Path, dict[str, object]], fmnist_small: tuple[Dataset, Dataset]) -> None:
    out, report = tiny_edge_run
    for name in ("model.keras", "last.keras", "labels.txt", "history.json", "history.csv", "learning_curves.png", "train_report.json"):
        assert (out / name).stat().st_size > 0, name
    _, val = fmnist_small
    assert (out / "labels.txt").read_text().split("\n")[:10] == list(val.classes)
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_accuracy"]) == 4
    # the saved best model really reaches the reported accuracy on the held-out images, far above chance (0.1)
    model = keras.models.load_model(out / "model.keras", compile=False)
    acc = float(np.mean(np.argmax(model.predict(val.x, verbose=0), 1) == val.y))
    assert acc == report["val_accuracy"]
    assert acc > 0.5
    assert report["val_accuracy"] >= max(history["val_accuracy"]) - 0.02
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paper_cnn_is_the_papers_figure_4() -> None:
    model = paper_cnn((32, 32, 3), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert [k for k in kinds if k in ("Conv2D", "MaxPooling2D", "Dense")] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dense", "Dense", "Dense", "Dense",
    ]
    convs = [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"]
    dense = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"]
    assert convs == [32, 64, 128] and dense == [128, 64, 32, 10]


def test_edge_cnn_fits_the_latency_budget() -> None:
    model = edge_cnn((32, 32, 3), 10, EdgeSpec())
    macs = count_macs(model)
    assert 10e6 < macs < 80e6, macs  # airbench-size: well inside 2 ms int8 on one core
    assert model.count_params() < 700_000


def test_cli_rejects_bad_arguments_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "converter.cli.train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("train-model: error: dataset not found")


def test_cutout_blanks_one_clipped_square_per_real_image_with_the_fill(cifar10_val: Dataset) -> None:
    x = cifar10_val.x[:200]
    fill = np.array([125, 123, 114])
    out = cutout_batch(x, np.random.default_rng(0), 12, fill)
    changed = np.any(out != x, axis=-1)  # pixels the square replaced (a pixel already of the fill colour does not show)
    blank = np.all(out == fill.astype(np.uint8), axis=-1)
    assert out.dtype == np.uint8 and out.shape == x.shape and not np.any(changed & ~blank)
    areas = blank.sum(axis=(1, 2))
    assert areas.max() == 144 and 36 <= areas.min() < 144  # whole squares inside, quarter squares at the corners
    rows, cols = np.nonzero(blank[int(np.argmax(areas))])
    assert rows.max() - rows.min() == 11 and cols.max() - cols.min() == 11 and len(rows) == 144  # one 12x12 square


def test_a_cutout_larger_than_the_images_is_refused_in_one_line(tmp_path: Path, shared_datasets: Path) -> None:
    cmd = [sys.executable, "-m", "converter.cli.train", "--data", str(shared_datasets / "cifar10-train.tar.gz"), "--arch", "edge", "--cutout", "40",
           "--limit-per-class", "20", "--epochs", "1", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "--cutout 40 / --translate None: use 0 or more px, a cutout no larger than the 32x32 images" in proc.stderr.strip().splitlines()[-1]


def test_transfer_copies_every_matching_layer_but_the_new_head(tiny_edge_run: tuple[Path, dict[str, object]]) -> None:
    from converter.training.classic import transfer_weights

    run, _ = tiny_edge_run
    source = keras.models.load_model(run / "model.keras", compile=False)
    target = edge_cnn((28, 28, 1), 2, EdgeSpec(widths=(16, 32, 32)))
    copied = transfer_weights(target, run / "model.keras")
    with_weights = [layer for layer in target.layers if layer.weights]
    assert copied == len(with_weights) - 1  # all but the 2-class "logits" layer
    assert np.array_equal(target.get_layer("b2_conv1").get_weights()[0], source.get_layer("b2_conv1").get_weights()[0])
    assert target.get_layer("logits").get_weights()[0].shape == (32, 2)


def test_a_killed_run_resumes_where_it_stopped_on_the_same_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL a real training run (with weight averaging on) mid-way, then finish it with --resume (the refusals before any
    training are checked in-process: the same main() and one-line error, without a second TensorFlow start-up each)."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "converter.cli.train", "--data", "fashion-mnist", "--limit-per-class", "100", "--arch", "edge",
            "--widths", "16,32,32", "--batch-size", "8", "--precision", "float32", "--out", str(out)]  # 125 steps an epoch: EMA on
    proc = subprocess.Popen([*base, "--epochs", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    point = out / "resume.json"
    deadline = time.monotonic() + 240
    try:
        while not (point.is_file() and json.loads(point.read_text() or "{}").get("epoch", 0) >= 2):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "two epochs took over 4 minutes"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert not (out / "model.keras").exists() and (out / "resume.keras").is_file()
    before = json.loads(point.read_text())

    def refused(*extra: str) -> str:
        """train-model's main() in-process: a non-zero exit and its one-line error (the last line on stderr)."""
        capsys.readouterr()
        code = main([*base[3:], *extra])
        err = capsys.readouterr().err
        assert code != 0 and "Traceback" not in err, err
        return err.strip().splitlines()[-1]

    assert refused("--epochs", "6", "--resume").endswith("resume with --epochs 4")
    assert "resume with the run's own --data and --image-size" in refused("--epochs", "4", "--resume", "--image-size", "32")
    assert refused("--epochs", "4", "--resume", "--activation", "gelu").endswith(
        "was started as a different network (--activation relu); resume with those flags")

    done = subprocess.run([*base, "--epochs", "4", "--resume"], check=False, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert f"resuming {out} at epoch {before['epoch'] + 1} of 4" in done.stderr
    report = json.loads((out / "train_report.json").read_text())
    history = json.loads((out / "history.json").read_text())
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(history["val_accuracy"]) == 4 and [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]  # each epoch once
    assert report["resumed_at_epoch"] == before["epoch"] + 1 and report["train_seconds"] > before["train_seconds"]
    assert history["loss"][-1] < history["loss"][0]  # it went on learning, not from scratch
    assert report["val_accuracy"] > 0.6 and not (out / "resume.keras").exists()

    assert "resume.keras not found" in refused("--epochs", "4", "--resume")


def test_training_runs_on_keras_jax_backend_and_the_model_converts_with_tensorflow(tmp_path: Path) -> None:
    """The GPU path: Keras 3 trains on JAX (or PyTorch) where TensorFlow has no GPU build; conversion stays on TensorFlow."""
    pytest.importorskip("jax")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "converter.cli.train", "--data", "fashion-mnist", "--limit-per-class", "60", "--arch", "edge",
           "--widths", "16,32,32", "--batch-size", "32", "--epochs", "3", "--precision", "float32", "--out", str(out)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "train_report.json").read_text())
    assert report["backend"] == "jax" and report["val_accuracy"] > 0.4
    conv = subprocess.run([sys.executable, "-m", "converter.cli.convert", str(out / "model.keras"), "--data", "fashion-mnist",
                           "--eval-limit", "1000", "--out", str(tmp_path / "bundle")],
                          check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert conv.returncode == 0, conv.stderr
    result = json.loads(conv.stdout.strip().splitlines()[-1])
    assert result["int8"] > 0.4 and abs(result["int8"] - result["float"]) <= 0.01  # the int8 model keeps what JAX trained


def test_val_fraction_0_trains_on_every_image_and_the_manifest_says_the_check_images_were_seen(tmp_path: Path) -> None:
    """The shipped model's last step: epochs chosen on the carve, then every image trained on (airbench keeps the final weights)."""
    out = tmp_path / "all"
    base = ["--data", "fashion-mnist", "--limit-per-class", "60", "--arch", "edge", "--widths", "8,16,16", "--epochs", "2",
            "--batch-size", "64", "--precision", "float32", "--val-fraction", "0", "--out", str(out)]
    assert main([*base, "--recipe", "classic"]) == 3  # classic picks its best validation epoch: refused
    train = subprocess.run([sys.executable, "-m", "converter.cli.train", *base, "--recipe", "airbench", "--pool-before-bn"],
                           check=False, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    report = json.loads((out / "train_report.json").read_text())
    assert report["train_images"] == 600 and report["val_images"] == 0 and report["val_accuracy"] is None
    assert "val_accuracy" not in json.loads((out / "history.json").read_text()) and (out / "model.keras").is_file()
    assert report["config"]["pool_before_bn"]  # trained pool-then-BN, saved with batch norm next to its conv (foldable)
    names = [layer.name for layer in keras.models.load_model(out / "model.keras", compile=False).layers]
    assert names.index("b0_bn0") == names.index("b0_conv0") + 1 and names.index("b0_pool") > names.index("b0_relu0")
    conv = subprocess.run([sys.executable, "-m", "converter.cli.convert", str(out / "model.keras"), "--data", "fashion-mnist",
                           "--out", str(tmp_path / "bundle"), "--eval-limit", "200", "--calib-images", "50", "--allow-drop"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert conv.returncode == 0, conv.stderr
    accuracy = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["accuracy"]
    assert accuracy["split"] == "training (seen in training)" and accuracy["images"] == 200


def test_pool_before_bn_is_refused_without_the_airbench_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", "fashion-mnist", "--limit-per-class", "10", "--arch", "edge", "--widths", "8,16,16", "--epochs", "1",
            "--recipe", "classic", "--pool-before-bn", "--out", str(tmp_path / "run")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "--pool-before-bn needs --arch edge --recipe airbench" in err and "Traceback" not in err
