"""The dataset doctor before train-model: real photos of the cats-vs-dogs archive with planted problems, warnings printed
and written into the train report, the data left as it was."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.cli.train import main as train_main
from converter.evaluation.doctor import TrainDoctor

PER_CLASS = 30
SIZE = "160"  # the backbone's features at 96 px give the planted dog 85-90 % of the vote, at 160 px 100 % (2026-12-07)
PLANTED_DOG = "dog.134.jpg"  # a plain dog photo past the first 30 of the archive's train/dog


@pytest.fixture(scope="module")
def planted(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """DIR/train/{cat,dog}/ of 30 real photos a class, plus: a cat photo copied into dog/ (a cross-class duplicate), a dog
    photo filed under cat/ (a mislabel) and a cat photo shrunk to 40x40 (smaller than half a 96 px input)."""
    root = tmp_path_factory.mktemp("doctor-data")
    taken: dict[str, list[tuple[str, bytes]]] = {"cat": [], "dog": []}
    spare_dog: tuple[str, bytes] | None = None
    with tarfile.open(shared_datasets / "cats-vs-dogs.tar.gz") as tf:
        for member in tf:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] != "train" or parts[-2] not in taken:
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            if parts[-2] == "dog" and parts[-1] == PLANTED_DOG:
                spare_dog = (parts[-1], fh.read())
            elif len(taken[parts[-2]]) < PER_CLASS:
                taken[parts[-2]].append((parts[-1], fh.read()))
            if spare_dog is not None and all(len(v) == PER_CLASS for v in taken.values()):
                break
    assert spare_dog is not None
    for cls, files in taken.items():
        (root / "train" / cls).mkdir(parents=True)
        for name, data in files:
            (root / "train" / cls / name).write_bytes(data)
    copied = taken["cat"][0]
    (root / "train" / "dog" / f"copy-of-{copied[0]}").write_bytes(copied[1])
    (root / "train" / "cat" / spare_dog[0]).write_bytes(spare_dog[1])
    img = cv2.imdecode(np.frombuffer(taken["cat"][1][1], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    cv2.imwrite(str(root / "train" / "cat" / "tiny.jpg"), cv2.resize(img, (40, 40), interpolation=cv2.INTER_AREA))
    return root, {"duplicate": f"train/cat/{copied[0]}", "copy": f"train/dog/copy-of-{copied[0]}",
                  "mislabel": f"train/cat/{spare_dog[0]}", "small": "train/cat/tiny.jpg"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_model_warns_about_a_planted_duplicate_mislabel_and_small_photo(planted: tuple[Path, dict[str, str]], tmp_path: Path,
                                                                               capfd: pytest.CaptureFixture[str]) -> None:
    root, files = planted
    before = _tree(root)
    assert train_main(["--data", str(root), "--image-size", SIZE, "--views", "1", "--out", str(tmp_path / "run"), "-q"]) == 0
    err = capfd.readouterr().err
    lines = [line.split("converter.evaluation.doctor: ", 1)[1] for line in err.splitlines() if "converter.evaluation.doctor: " in line]
    assert all(line.startswith("dataset: ") for line in lines) and len(lines) >= 3, err
    assert any("exact copies in two or more classes" in line and files["duplicate"] in line and files["copy"] in line for line in lines), lines
    assert any("smaller than half the model input" in line and files["small"] in line for line in lines), lines
    assert any("suspected mislabel" in line and f"{files['mislabel']} looks like dog" in line for line in lines), lines

    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    found = {f["kind"]: f for f in report["dataset_findings"]}
    assert [f["message"] for f in report["dataset_findings"]] == [line.removeprefix("dataset: ") for line in lines]
    assert set(found["duplicates-across-classes"]["files"]) == {files["duplicate"], files["copy"]}
    assert found["small-images"]["files"] == [files["small"]]
    assert files["mislabel"] in found["mislabels"]["files"]
    assert report["train_images"] + report["val_images"] == 2 * PER_CLASS + 3  # nothing left out or changed:
    assert _tree(root) == before


def test_the_doctor_rebuilds_the_loaders_rows_and_skips_an_archive(planted: tuple[Path, dict[str, str]], shared_datasets: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from converter.data.datasets import decode_image, fit_to_size, stratified_sample, train_val

    root, _ = planted
    train, val = train_val(root, (96, 96), 0.1, 0)  # 96 px: the rows' pixels are compared, not features
    train = train.subset(stratified_sample(train.y, 12, 0))
    doctor = TrainDoctor(root, (96, 96))
    assert {f.kind for f in doctor.check_files()} >= {"duplicates-across-classes", "small-images"}
    matched = doctor.photos(val_fraction=0.1, seed=0, limit_per_class=12, train_y=train.y, val_y=val.y)
    assert matched is not None and len(matched[0]) == 24 and len(matched[1]) == len(val)
    for photos, ds in ((matched[0], train), (matched[1], val)):  # the same photo behind every row: its pixels, decoded again
        for photo, x in zip(photos[:6], ds.x[:6], strict=False):
            again = fit_to_size(decode_image(photo.path.read_bytes()), (96, 96))  # type: ignore[arg-type]
            assert np.array_equal(again, x), photo.name
    # rows that do not belong to these photos (another carve): no mislabel check rather than the wrong photos named
    assert doctor.photos(val_fraction=0.1, seed=0, limit_per_class=12, train_y=train.y[::-1], val_y=val.y) is None

    caplog.set_level(logging.INFO, logger="converter.evaluation.doctor")
    archive = TrainDoctor(shared_datasets / "cats-vs-dogs.tar.gz", (96, 96))
    assert archive.check_files() == [] and archive.skipped is not None and "archive" in archive.skipped
    assert any("dataset doctor skipped" in r.getMessage() and "archive" in r.getMessage() for r in caplog.records)
    assert TrainDoctor("cifar10", (32, 32)).check_files() == []
    from converter.cli.train import build_parser

    assert build_parser().parse_args(["--data", str(root), "--out", "x", "--no-doctor"]).doctor is False
    assert build_parser().parse_args(["--data", str(root), "--out", "x"]).doctor is True
