"""Fixtures of the frame loop's parts: the shipped CIFAR-10 model opened once, real CIFAR-10 photos as camera frames."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.model import default_model_dir
from edge_app.pipeline.modelslot import ModelSlot, OpenModel, open_model
from tests.edge_app.pipeline.kit import opener


@pytest.fixture(scope="session")
def cifar10_model() -> OpenModel:
    return open_model(default_model_dir("cifar10"), None, delegate="cpu", device=None, threads=1)


@pytest.fixture
def slot(cifar10_model: OpenModel) -> ModelSlot:
    """A slot already running the shipped CIFAR-10 model (its reloads reopen that bundle)."""
    slot = ModelSlot(opener(default_model_dir("cifar10")), threading.Event())
    slot.files, slot.classifier, slot.acceleration, slot.model_id = cifar10_model
    return slot


@pytest.fixture(scope="session")
def photos(cifar10_val) -> list[np.ndarray]:
    """Twelve real CIFAR-10 validation photos as 96x128 BGR camera frames: one of each class, then two more of the first two."""
    picks = [int(np.flatnonzero(cifar10_val.y == c)[k]) for k, c in [(0, c) for c in range(10)] + [(1, 0), (1, 1)]]
    return [cv2.resize(cv2.cvtColor(cifar10_val.x[i], cv2.COLOR_RGB2BGR), (128, 96), interpolation=cv2.INTER_NEAREST) for i in picks]


@pytest.fixture
def photo_folder(tmp_path: Path, photos: list[np.ndarray]) -> Path:
    """The photos as PNG files (lossless: the folder source reads back exactly ``photos``)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(photos):
        assert cv2.imwrite(str(folder / f"img_{i:03d}.png"), image)
    return folder
