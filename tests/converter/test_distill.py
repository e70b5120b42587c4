"""Distillation (train-model --teacher): real teachers, real Fashion-MNIST training runs, and bad teachers refused."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from converter.cli.train import main
from converter.data.datasets import Dataset, train_val
from converter.training.distill import load_teacher, probabilities, soft_targets, soften

SMALL = ["--data", "fashion-mnist", "--arch", "edge", "--widths", "16,32,32", "--batch-size", "64", "--precision", "float32"]


def _accuracy(model_path: Path, data: Dataset, y: np.ndarray) -> float:
    model = keras.models.load_model(model_path, compile=False)
    return float(np.mean(np.argmax(model.predict(data.x, verbose=0), 1) == y))


def test_soften_keeps_the_teachers_ranking_and_spreads_its_probability(tiny_edge_run: tuple[Path, dict[str, object]],
                                                                       fmnist_small: tuple[Dataset, Dataset]) -> None:
    run, _ = tiny_edge_run
    _, val = fmnist_small
    p = probabilities(load_teacher(str(run)), val.x)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(soften(p, 1.0), p)
    q = soften(p, 3.0)
    assert np.allclose(q.sum(1), 1, atol=1e-5) and np.array_equal(q.argmax(1), p.argmax(1))
    assert np.all(q.max(1) <= p.max(1) + 1e-6) and q.max(1).mean() < p.max(1).mean() - 0.05
    target = soft_targets(val.y, q, 0.7)
    assert np.allclose(target.sum(1), 1, atol=1e-5) and np.all(target[np.arange(len(val)), val.y] >= 0.3)


def test_a_student_learns_what_its_teacher_says_not_the_labels(tiny_edge_run: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    """A teacher whose classes are shifted by one (its logits' columns rolled): a student distilled at weight 1 follows it."""
    run, _ = tiny_edge_run
    teacher = keras.models.load_model(run / "model.keras", compile=False)
    logits = teacher.get_layer("logits")
    logits.set_weights([np.roll(logits.get_weights()[0], 1, axis=1)])  # class k's score now predicts class k + 1
    (tmp_path / "shifted").mkdir()
    teacher.save(tmp_path / "shifted" / "model.keras")  # no labels.txt: checked by its number of outputs
    out = tmp_path / "student"
    args = [*SMALL, "--limit-per-class", "150", "--epochs", "4", "--teacher", str(tmp_path / "shifted"),
            "--distill-weight", "1", "--distill-temperature", "1", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "train_report.json").read_text())
    _, val = train_val("fashion-mnist", None, 0.1, 0)
    info = report["teachers"]
    assert info["weight"] == 1 and info["temperature"] == 1 and report["config"]["label_smoothing"] == 0
    # the report's teacher accuracy is the teacher's own, on the same held-out images (mirror-averaged)
    teacher_p = probabilities(load_teacher(str(tmp_path / "shifted")), val.x)
    assert info["val_accuracy"] == round(float(np.mean(teacher_p.argmax(1) == val.y)), 4) < 0.2
    shifted = (val.y + 1) % 10
    assert float(np.mean(teacher_p.argmax(1) == shifted)) > 0.5
    student_shifted, student_true = _accuracy(out / "model.keras", val, shifted), _accuracy(out / "model.keras", val, val.y)
    assert student_shifted > 0.4 and student_true < 0.2, (student_shifted, student_true)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teacher", "{tmp}/missing"], "--teacher {tmp}/missing: no such model; give a model.keras or the train-model --out folder"),
        (["--teacher", "{tmp}/junk.keras"], "is not a readable Keras model"),
        (["--teacher", "{run}", "--distill-weight", "0"], "--distill-weight 0.0: use a share above 0 and at most 1"),
        (["--teacher", "{run}", "--distill-temperature", "-1"], "--distill-temperature -1.0: use a temperature above 0"),
        (["--teacher", "{run}", "--arch", "paper"], "use it with --arch edge, not --arch paper"),
        (["--teacher", "{run}", "--data", "cifar10-archive"], "it was trained on the classes t-shirt, trouser"),
    ],
)
def test_bad_teachers_are_refused_in_one_line(extra: list[str], message: str, *, tiny_edge_run: tuple[Path, dict[str, object]], tmp_path: Path,
                                              shared_datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = tiny_edge_run
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    subs = {"{tmp}": str(tmp_path), "{run}": str(run)}
    subs["cifar10-archive"] = str(shared_datasets / "cifar10-train.tar.gz")
    for k, v in subs.items():
        extra, message = [a.replace(k, v) for a in extra], message.replace(k, v)
    args = [*SMALL, "--limit-per-class", "5", "--epochs", "1", *extra, "--out", str(tmp_path / "o")]
    assert main(args) == 3
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("train-model: error: ")
    assert message in last, last
