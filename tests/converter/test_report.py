"""The report is generated from results.json: its tables read back to the same numbers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from converter.classical.baselines import run_baselines
from converter.data.datasets import Dataset, stratified_sample, stratified_split
from converter.evaluation.report import (
    RESULTS_FORMAT,
    MethodResult,
    fmt_accuracy,
    method_dicts,
    methods_of,
    parse_markdown_table,
    per_class_accuracy,
    plot_comparison,
    render_markdown,
    results_document,
    write_markdown,
    write_results,
)


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def fashion_results(fashion_mnist_test: Dataset) -> tuple[dict[str, Any], Dataset]:
    """A results document from a real (small) run of four baselines on Fashion-MNIST."""
    ti, vi = stratified_split(fashion_mnist_test.y, 0.5, seed=0)
    train = fashion_mnist_test.subset(ti).subset(stratified_sample(fashion_mnist_test.y[ti], 40))
    held = fashion_mnist_test.subset(vi).subset(stratified_sample(fashion_mnist_test.y[vi], 20))
    with threadpool_limits(1):
        methods = [r for r, _ in run_baselines(["lbp", "color"], ["logreg", "forest"], train, held, n_jobs=1)]
    doc = results_document(
        dataset=train.name, data="fashion-mnist", classes=train.classes, image_shape=train.image_shape,
        train_images=len(train), eval_images=len(held), eval_split="half of the test split", command="compare-models --data fashion-mnist",
        notes=["a note | with a pipe"],
    )
    doc["methods"] = method_dicts(methods)
    return doc, held


def test_markdown_tables_read_back_as_the_json(fashion_results: tuple[dict[str, Any], Dataset], tmp_path: Path) -> None:
    doc, _ = fashion_results
    write_results(doc, tmp_path)
    md = write_markdown(json.loads((tmp_path / "results.json").read_text()), tmp_path).read_text()
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["format"] == RESULTS_FORMAT
    by_name = {m["name"]: m for m in loaded["methods"]}

    rows = parse_markdown_table(md, "Method")
    assert {r["Method"] for r in rows} == set(by_name)
    accuracies = [float(r["Accuracy (%)"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    for row in rows:
        m = by_name[row["Method"]]
        assert row["Kind"] == m["kind"]
        assert float(row["Accuracy (%)"]) == pytest.approx(100 * m["accuracy"], abs=0.005)
        assert float(row["Train time (s)"]) == pytest.approx(m["train_seconds"], abs=0.05)
        assert float(row["Inference (ms/image)"]) == pytest.approx(m["inference_ms"], abs=0.0005, rel=0.01)
        assert int(row["Size (bytes)"].replace(",", "")) == m["size_bytes"]
        assert int(row["Train images"]) == m["train_images"]

    per_class = parse_markdown_table(md.split("## Per-class accuracy")[1], "Method")
    assert len(per_class) == len(by_name)
    for row in per_class:
        m = by_name[row["Method"]]
        for cls in loaded["classes"]:
            assert float(row[cls]) == pytest.approx(100 * m["per_class"][cls], abs=0.005)

    assert loaded["command"] in md and "fashion-mnist" in md
    assert "- a note | with a pipe" in md


def test_markdown_is_a_function_of_the_json_alone(fashion_results: tuple[dict[str, Any], Dataset]) -> None:
    doc, _ = fashion_results
    again = json.loads(json.dumps(doc))
    assert render_markdown(again) == render_markdown(doc)
    assert [m.key for m in methods_of(again)] == [m["key"] for m in doc["methods"]]


def test_chart_is_a_png(fashion_results: tuple[dict[str, Any], Dataset], tmp_path: Path) -> None:
    doc, _ = fashion_results
    path = plot_comparison(methods_of(doc), tmp_path / "accuracy.png", title="fashion")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 600
    assert img.std() > 10  # something was drawn


def test_per_class_accuracy_is_recall() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 2, 1, 0, 2])
    assert per_class_accuracy(y, pred, ["a", "b", "c", "d"]) == {"a": 0.5, "b": 0.5, "c": 1.0}  # d: no images, no entry


def test_parse_table_keeps_escaped_pipes() -> None:
    md = "text\n\n| Method | Accuracy (%) |\n| --- | ---: |\n| a \\| b | 12.50 |\n| c | 1.00 |\n\nmore"
    assert parse_markdown_table(md) == [{"Method": "a | b", "Accuracy (%)": "12.50"}, {"Method": "c", "Accuracy (%)": "1.00"}]
    with pytest.raises(ValueError, match="no table"):
        parse_markdown_table("nothing here")


def test_method_result_round_trips() -> None:
    m = MethodResult("k", "n", "cnn", 0.5, {"a": 0.5}, 1.0, 2.0, 3, ".keras file", 4, ["x"], {"y": 1})
    assert MethodResult.from_dict(json.loads(json.dumps(method_dicts([m])[0]))) == m
    assert fmt_accuracy(float("nan")) == "n/a"
