"""Shared fixtures: real data (the shared archives, Fashion-MNIST), the shipped model, test videos."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.data.datasets import Dataset, load_dataset, stratified_split

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real image archives: ``$EDGE_RECOGNITION_DATASETS``, else ``../shared/datasets`` beside the checkout."""
    env = os.environ.get("EDGE_RECOGNITION_DATASETS")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "datasets", REPO / "shared" / "datasets", Path("/work/shared/datasets")]
    for candidate in candidates:
        if (candidate / "cifar10-train.tar.gz").exists():
            return candidate
    pytest.fail("cifar10-train.tar.gz not found: set EDGE_RECOGNITION_DATASETS to the folder holding the shared archives")


@pytest.fixture(scope="session")
def cifar10(shared_datasets: Path) -> Dataset:
    """The real CIFAR-10 training split (decoded once, then cached on disk)."""
    return load_dataset(shared_datasets / "cifar10-train.tar.gz")


@pytest.fixture(scope="session")
def cifar10_val(cifar10: Dataset) -> Dataset:
    """train-model's seed-0 validation carve: held out from every carve run; the shipped CIFAR-10 model trained on all 50,000 images, these too."""
    _, val = stratified_split(cifar10.y, 0.1, seed=0)
    return cifar10.subset(val)


@pytest.fixture(scope="session")
def fashion_mnist_test() -> Dataset:
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The shipped CIFAR-10 bundle (``models/cifar10``): the small 32 px model the pipeline tests run (edge-app's
    default is the ImageNet bundle since issue 34; tests/edge_app/test_imagenet_bundle.py checks it)."""
    from edge_app.model import default_model_dir

    path = default_model_dir("cifar10")
    assert (path / "model.tflite").exists(), f"shipped model missing in {path}"
    return path


@pytest.fixture
def model_copy(tmp_path: Path, default_model: Path) -> Path:
    """A copy of the shipped model bundle in ``tmp_path / "model"``, free to modify."""
    folder = tmp_path / "model"
    shutil.copytree(default_model, folder)
    return folder


def _write_video(path: Path, images: Sequence[np.ndarray], size: tuple[int, int] = (640, 480), fps: float = 30.0, repeat: int = 1) -> Path:
    """Write RGB ``images`` upscaled to ``size`` (w, h) as an MJPG AVI, each repeated ``repeat`` times."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for img in images:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.shape[-1] == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        frame = cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST)
        for _ in range(repeat):
            writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def write_video() -> Callable[..., Path]:
    """Factory: ``write_video(path, rgb_images, size=(640, 480), fps=30, repeat=1)``."""
    return _write_video


# ---------------------------------------------------------------------- strict mode (CI)

MISSING_TOOL_REASONS = ("is not installed", "could not import")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With ``EDGE_RECOGNITION_STRICT=1`` (``.ci/run``), a test skipped for a missing tool fails instead:
    ``tests/setup.sh`` installs every tool, so such a skip means the setup is broken, not that the test may pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("EDGE_RECOGNITION_STRICT") == "1" and report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(words in reason for words in MISSING_TOOL_REASONS):
            report.outcome = "failed"
            report.longrepr = f"strict mode: skipped because a tool is missing ({reason}); tests/setup.sh should have installed it"
