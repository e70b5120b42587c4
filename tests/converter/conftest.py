"""Converter fixtures: a tiny edge CNN really trained on real Fashion-MNIST images (shared by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter.data.datasets import Dataset, stratified_sample
from converter.training.classic import train_model
from converter.training.config import TrainConfig


@pytest.fixture(scope="session")
def fashion_mnist_train() -> Dataset:
    from converter.data.datasets import load_dataset

    return load_dataset("fashion-mnist", "train")


@pytest.fixture(scope="session")
def fmnist_small(fashion_mnist_train: Dataset, fashion_mnist_test: Dataset) -> tuple[Dataset, Dataset]:
    """150 training and 50 held-out real Fashion-MNIST images per class."""
    train = fashion_mnist_train.subset(stratified_sample(fashion_mnist_train.y, 150, seed=1))
    val = fashion_mnist_test.subset(stratified_sample(fashion_mnist_test.y, 50, seed=1))
    return train, val


@pytest.fixture(scope="session")
def tiny_edge_run(fmnist_small: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A narrow edge CNN trained for a few epochs: (run folder, train report)."""
    train, val = fmnist_small
    out = tmp_path_factory.mktemp("tiny-edge")
    cfg = TrainConfig(arch="edge", epochs=4, batch_size=64, widths=(16, 32, 32), precision="float32", warmup_epochs=1)
    report = train_model(cfg, train, val, out, verbose=0)
    return out, report
