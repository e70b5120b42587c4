"""Fixtures of the edge_app tests that several modules share: a real two-zone scene of dogs-vs-cats photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset, load_dataset
from edge_app.model import Classifier, default_model_dir, resolve_model

HALF = 30  # frames before the photos swap sides


@pytest.fixture(scope="session")
def sure_photos(shared_datasets: Path) -> tuple[np.ndarray, np.ndarray]:
    """A cat and a dog photo of the test split that the shipped model gets right with the highest confidence."""
    test: Dataset = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "test", image_size=(240, 240))
    clf = Classifier(resolve_model(default_model_dir("cats-vs-dogs")))
    picks = []
    for name in ("cat", "dog"):
        idx = np.flatnonzero(test.y == test.classes.index(name))[:40]
        scores = [clf.scores(cv2.cvtColor(test.x[i], cv2.COLOR_RGB2BGR))[clf.labels.index(name)] for i in idx]
        picks.append(test.x[idx[int(np.argmax(scores))]])
    return picks[0], picks[1]


@pytest.fixture(scope="session")
def scene(tmp_path_factory, sure_photos) -> Path:
    cat, dog = (cv2.cvtColor(cv2.resize(p, (320, 480)), cv2.COLOR_RGB2BGR) for p in sure_photos)
    path = tmp_path_factory.mktemp("zones") / "scene.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(2 * HALF):
        writer.write(np.hstack([cat, dog] if i < HALF else [dog, cat]))
    writer.release()
    return path


