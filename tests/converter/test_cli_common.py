"""The workstation commands' shared CLI behaviour: one-line errors, -q (no TensorFlow start-up lines), --cache-dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.cli.common import argv_asks_quiet
from converter.data.datasets import CIFAR10_CLASSES, Dataset, stratified_sample

BIN = Path(sys.executable).parent


def test_with_q_each_command_prints_only_its_one_line_error(tmp_path: Path) -> None:
    """Real console scripts, bad paths, -q: TensorFlow's C++ start-up notices (oneDNN, CPU feature guard) stay out.

    train-model imports Keras at module load (before its flags are parsed); evaluate-model imports it while loading a
    .keras file that is not a model; convert-model and retrain-model check their paths before importing it.
    """
    for cls in ("cat", "dog"):  # class folders without a single image
        (tmp_path / "empty" / "train" / cls).mkdir(parents=True)
        (tmp_path / "empty" / "train" / cls / "notes.txt").write_text("no photos yet")
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_bytes(b"not a model")
    missing = tmp_path / "missing"
    commands = {
        "train-model": (["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")], 3),
        "convert-model": ([str(missing / "model.keras"), "--data", str(missing), "--out", str(tmp_path / "bundle")], 4),
        "evaluate-model": ([str(not_a_model), "--data", str(missing)], 4),
        "retrain-model": ([str(missing)], 3),
    }
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    procs = {name: subprocess.Popen([str(BIN / name), *args, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name, (args, _) in commands.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), f"{name}:\n{err}"
        assert proc.returncode == commands[name][1], f"{name}: exit {proc.returncode}: {err}"
        assert out == ""


def test_train_model_on_folders_without_images_names_the_layout_and_extensions(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        (tmp_path / "data" / "train" / cls / "photo.heic").write_bytes(b"not a supported format")
    proc = subprocess.run([str(BIN / "train-model"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "-q"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"train-model: error: no images in {tmp_path / 'data'} for split 'train': expected {tmp_path / 'data'}/train/<class>/<image> "
        f"(or {tmp_path / 'data'}/<class>/<image>), images ending in .jpg, .jpeg, .png, .bmp, .webp"
    ]


def test_argv_asks_quiet_only_for_a_command_with_q_and_without_debug() -> None:
    assert argv_asks_quiet(["/venv/bin/train-model", "--data", "x", "-q"])
    assert argv_asks_quiet(["/repo/converter/cli/train.py", "--quiet"])  # python -m converter.cli.train
    assert not argv_asks_quiet(["/venv/bin/train-model", "--data", "x", "-q", "--debug"])
    assert not argv_asks_quiet(["/venv/bin/train-model", "--data", "x"])
    assert not argv_asks_quiet(["/venv/bin/pytest", "-q"])  # someone else's -q
    assert not argv_asks_quiet([])


def test_cache_dir_puts_the_dataset_cache_there(tmp_path: Path, cifar10: Dataset, default_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate-model --cache-dir DIR (the shipped CIFAR-10 bundle on real CIFAR-10 PNGs): the decoded arrays land in DIR."""
    from converter.cli.evaluate import main

    sample = stratified_sample(cifar10.y, 2, seed=3)
    for i, idx in enumerate(sample):
        folder = tmp_path / "data" / "train" / CIFAR10_CLASSES[int(cifar10.y[idx])]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(cifar10.x[idx], cv2.COLOR_RGB2BGR))
    elsewhere = tmp_path / "default-cache"
    monkeypatch.setenv("EDGE_RECOGNITION_CACHE", str(elsewhere))
    out = tmp_path / "eval"
    code = main([str(default_model), "--data", str(tmp_path / "data"), "--split", "train", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out), "-q"])
    assert code == 0
    assert json.loads((out / "evaluation.json").read_text())["images"] == len(sample)
    assert len(list((tmp_path / "c").glob("data-train-*.npz"))) == 1 and not elsewhere.exists()
    assert os.environ["EDGE_RECOGNITION_CACHE"] == str(elsewhere)  # restored after the command
    assert np.load(next((tmp_path / "c").glob("*.npz")))["x"].shape == (len(sample), 32, 32, 3)
