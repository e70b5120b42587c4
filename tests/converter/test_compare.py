"""``compare-models`` end to end on real images: report files, agreement of Markdown and JSON, reuse, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from converter.cli.compare import main
from converter.data.datasets import Dataset
from converter.evaluation.report import parse_markdown_table
from edge_app.errors import ToolExitCode

CLASSES = ("cat", "ship", "truck")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture
def folder_with_test_split(cifar10: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A class-per-folder tree of real CIFAR-10 images with its own test split (PNG, lossless)."""
    monkeypatch.setenv("EDGE_RECOGNITION_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "three"
    rng = np.random.default_rng(3)
    for cls in CLASSES:
        idx = rng.choice(np.flatnonzero(cifar10.y == cifar10.classes.index(cls)), 55, replace=False)
        for n, i in enumerate(idx):
            split = "test" if n < 15 else "train"
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / cls / f"{i}.png"), cv2.cvtColor(cifar10.x[i], cv2.COLOR_RGB2BGR))
    return root


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def _assert_report_matches_json(out: Path) -> None:
    res = _results(out)
    md = (out / "report.md").read_text()
    rows = {r["Method"]: r for r in parse_markdown_table(md)}
    assert set(rows) == {m["name"] for m in res["methods"]}
    for m in res["methods"]:
        row = rows[m["name"]]
        assert float(row["Accuracy (%)"]) == pytest.approx(100 * m["accuracy"], abs=0.005)
        assert int(row["Size (bytes)"].replace(",", "")) == m["size_bytes"]
        assert int(row["Train images"]) == m["train_images"]
    assert res["command"] in md and res["date"] in md and res["machine"]["cpu"] in md


def test_test_split_is_the_held_out_set(folder_with_test_split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    rc = main(["--data", str(folder_with_test_split), "--out", str(out), "--methods", "classical", "--features", "hog,color",
               "--classifiers", "logreg,rbf-svm", "--jobs", "1", "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    res = _results(out)
    assert res["eval_split"] == "the dataset's own test split"
    assert res["classes"] == list(CLASSES)
    assert res["eval_images"] == 45 and res["train_images"] == 3 * 36  # 40 a class, 10 % carved off for the CNNs' validation
    assert [m["key"] for m in res["methods"]] == ["hog/logreg", "hog/rbf-svm", "color/logreg", "color/rbf-svm"]
    best = max(m["accuracy"] for m in res["methods"])
    assert best > 0.55  # chance is 1/3
    _assert_report_matches_json(out)
    assert (out / "accuracy.png").exists() and not res["failure_analysis"]
    assert not (tmp_path / "work").exists()  # no CNN, no work folder
    assert "best" in capsys.readouterr().out


def test_merge_keeps_earlier_methods_and_redoes_the_named_ones(folder_with_test_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    common = ["--data", str(folder_with_test_split), "--out", str(out), "--methods", "classical", "--jobs", "1", "--work-dir", str(tmp_path / "w")]
    assert main([*common, "--features", "hog", "--classifiers", "logreg"]) == 0
    assert main([*common, "--features", "color,hog", "--classifiers", "logreg", "--merge"]) == 0
    res = _results(out)
    assert sorted(m["key"] for m in res["methods"]) == ["color/logreg", "hog/logreg"]  # hog/logreg redone, not doubled
    assert len(res["commands"]) == 2
    _assert_report_matches_json(out)
    assert main([*common, "--features", "color", "--classifiers", "logreg"]) == 0  # without --merge: a fresh report
    assert [m["key"] for m in _results(out)["methods"]] == ["color/logreg"]


def test_bad_input_is_one_line_with_an_exit_code(folder_with_test_split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r")
    work = ["--work-dir", str(tmp_path / "work")]
    assert main(["--data", str(folder_with_test_split), "--out", out, "--methods", "classical,svm", *work]) == ToolExitCode.ERROR
    assert "unknown method(s) svm" in capsys.readouterr().err

    assert main(["--data", str(folder_with_test_split), "--out", out, "--methods", "edge", "--edge-model", str(tmp_path / "nope.keras"),
                 *work]) == ToolExitCode.MODEL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.keras not found" in err

    assert main(["--data", str(folder_with_test_split), "--out", out, "--eval-split", "test", "--methods", "classical",
                 "--features", "sift", *work]) == ToolExitCode.ERROR
    assert "unknown feature 'sift'" in capsys.readouterr().err

    big = folder_with_test_split / "train" / "cat" / "big.png"
    cv2.imwrite(str(big), np.full((48, 40, 3), 128, np.uint8))
    assert main(["--data", str(folder_with_test_split), "--out", out, "--methods", "classical", *work]) == ToolExitCode.DATA
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--image-size" in err


@pytest.mark.slow
def test_quick_run_with_both_cnns_and_int8(shared_datasets: Path, folder_with_test_split: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "cifar", tmp_path / "work"
    rc = main(["--data", str(shared_datasets / "cifar10-train.tar.gz"), "--out", str(out), "--work-dir", str(work), "--quick",
               "--limit-per-class", "20", "--eval-limit-per-class", "10", "--features", "lbp", "--classifiers", "logreg,forest",
               "--epochs-paper", "1", "--epochs-edge", "1", "--jobs", "1"])
    assert rc == 0
    res = _results(out)
    assert res["quick"] and res["eval_images"] == 100 and res["train_images"] == 200
    assert "validation split" in res["eval_split"]
    keys = [m["key"] for m in res["methods"]]
    assert keys == ["lbp/logreg", "lbp/forest", "paper/float", "paper/int8", "edge/float", "edge/int8"]
    by_key = {m["key"]: m for m in res["methods"]}
    for m in res["methods"]:
        assert set(m["per_class"]) == set(res["classes"])  # every method scored on the same 10 classes
        assert 0.0 <= m["accuracy"] <= 1.0 and m["inference_ms"] > 0 and m["size_bytes"] > 0
    for arch in ("paper", "edge"):
        f, q = by_key[f"{arch}/float"], by_key[f"{arch}/int8"]
        assert q["size_of"] == ".tflite file" and q["size_bytes"] < f["size_bytes"]
        assert q["train_seconds"] >= f["train_seconds"] and q["details"]["calibration_images"] == 100
        assert (work / f"{arch}-int8.tflite").stat().st_size == q["size_bytes"]
    assert [fa["method"] for fa in res["failure_analysis"]] == ["paper/float", "edge/float"]
    for name in ("report.md", "accuracy.png", "confusion_paper.png", "confusion_edge.txt", "mistakes_edge.png"):
        assert (out / name).stat().st_size > 0
    assert cv2.imread(str(out / "mistakes_paper.png")) is not None
    md = (out / "report.md").read_text()
    assert "## Failure analysis: edge CNN (float, Keras)" in md and "![most confident mistakes](mistakes_edge.png)" in md
    _assert_report_matches_json(out)

    # the trained edge CNN is reused, not retrained: its training numbers come from train_report.json
    again = tmp_path / "again"
    model = work / "edge" / "model.keras"
    rc = main(["--data", str(shared_datasets / "cifar10-train.tar.gz"), "--out", str(again), "--quick", "--limit-per-class", "20",
               "--eval-limit-per-class", "10", "--methods", "edge", "--edge-model", str(model), "--no-int8", "--work-dir", str(work)])
    assert rc == 0
    (m,) = _results(again)["methods"]
    report = json.loads((work / "edge" / "train_report.json").read_text())
    assert m["key"] == "edge/float" and m["train_seconds"] == pytest.approx(report["train_seconds"], abs=0.05)
    assert m["accuracy"] == by_key["edge/float"]["accuracy"]
    assert any("reused from" in n for n in m["notes"])

    # a model for other classes is refused in one line
    assert main(["--data", str(folder_with_test_split), "--out", str(tmp_path / "x"), "--methods", "edge", "--edge-model", str(model),
                 "--work-dir", str(work)]) == ToolExitCode.MODEL


@pytest.mark.slow
def test_dogs_vs_cats_scores_on_its_test_split(shared_datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "dvc"
    rc = main(["--data", str(shared_datasets / "cats-vs-dogs.tar.gz"), "--out", str(out), "--image-size", "32", "--methods", "classical",
               "--features", "hog", "--classifiers", "logreg", "--limit-per-class", "100", "--eval-limit-per-class", "100", "--jobs", "1",
               "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    res = _results(out)
    assert res["classes"] == ["cat", "dog"] and res["image_shape"] == [32, 32, 3]
    assert res["eval_split"] == "the dataset's own test split" and res["eval_images"] == 200
    assert res["methods"][0]["accuracy"] > 0.55  # HOG on 32x32 thumbnails: weak, but above chance
