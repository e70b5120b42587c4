"""``converter.export.imagenet``: the class names of the ImageNet bundle and its cat/dog check (the bundle itself: tests/edge_app/test_imagenet_bundle.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from converter.errors import DataError
from converter.export.imagenet import CAT_IDS, DOG_IDS, SHARED_NAMES, class_names, labels_from_timm_wheel, pet_rates
from tests.photos import first_pet_photos

SYNSETS = [f"n{i:08d}" for i in range(1000)]


def lemmas(**special: str) -> dict[str, str]:
    out = {s: f"thing {i}, Res {i}" for i, s in enumerate(SYNSETS)}
    out.update({SYNSETS[int(k[1:])]: v for k, v in special.items()})
    return out


def test_first_lemmas_with_shared_ones_told_apart() -> None:
    names = class_names(SYNSETS, lemmas(i0="tench, Tinca tinca", i134="crane", i517="crane", i264="Cardigan, Cardigan Welsh corgi",
                                        i474="cardigan", i638="maillot", i639="maillot, tank suit", i281="tabby, tabby cat"))
    assert names[0] == "tench" and names[281] == "tabby" and names[5] == "thing 5"
    assert (names[134], names[517]) == (SHARED_NAMES[134], SHARED_NAMES[517])
    assert (names[264], names[474], names[638], names[639]) == ("Cardigan Welsh corgi", "cardigan", "maillot", "tank suit")
    assert len(set(names)) == 1000


def test_names_that_cannot_be_told_apart_or_a_wrong_list_are_refused() -> None:
    with pytest.raises(DataError, match="still shared"):
        class_names(SYNSETS, lemmas(i3="kite", i4="kite"))
    with pytest.raises(DataError, match="1000 distinct"):
        class_names(SYNSETS[:999], lemmas())
    with pytest.raises(DataError, match="no lemma"):
        class_names(SYNSETS, {s: "x" for s in SYNSETS[1:]})


def test_reads_the_lists_from_a_wheel_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "timm-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("timm/data/_info/imagenet_synsets.txt", "\n".join(SYNSETS) + "\n")
        z.writestr("timm/data/_info/imagenet_synset_to_lemma.txt", "".join(f"{s}\t{v}\n" for s, v in lemmas(i0="tench, Tinca tinca").items()))
    names, provenance = labels_from_timm_wheel(wheel)
    assert names[0] == "tench" and len(names) == 1000 and provenance["source"].startswith(wheel.name) and len(provenance["wheel_sha256"]) == 64
    (tmp_path / "empty.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="timm wheel"):
        labels_from_timm_wheel(tmp_path / "empty.whl")


def test_pet_rates_count_imagenets_cat_and_dog_classes() -> None:
    top1 = np.array([CAT_IDS[0], CAT_IDS[-1], DOG_IDS[0], 0, DOG_IDS[-1], CAT_IDS[1]])
    is_dog = np.array([False, False, False, False, True, True])
    assert pet_rates(top1, is_dog) == {"cat": 0.5, "dog": 0.5, "all": 0.5}


def first_photos(archive: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` cat and dog JPEGs of the archive's test split, RGB, fitted to 224 px as on the device."""
    import cv2

    from edge_app.preprocess import fit_to_size

    photos = first_pet_photos(archive, per_class)
    rgb = [fit_to_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (224, 224)) for _, bgr in photos]
    return np.stack(rgb), np.array([name == "dog" for name, _ in photos])


def test_int8_bundle_keeps_the_float_top1_except_on_near_ties(shared_datasets: Path) -> None:
    """The shipped int8 bundle against the float model it was converted from, on 48 real photos: where the float model's
    two best classes are 0.5 or more apart in logits, int8 keeps its top-1 (benchmarks/int8_diagnosis.py: 1,329 of the 1,330
    such test photos); the disagreements are near ties (tabby / tiger cat), and the float top-1 stays in the int8 top 3."""
    from ai_edge_litert.interpreter import Interpreter

    from converter.export.imagenet import float_model
    from edge_app.model import default_model_dir

    x, _ = first_photos(shared_datasets / "cats-vs-dogs.tar.gz", 24)
    model, _ = float_model()
    log_p = np.log(np.maximum(model.predict(x.astype(np.float32), batch_size=16, verbose=0), 1e-30))  # logits up to a constant
    it = Interpreter(model_path=str(default_model_dir("imagenet") / "model.tflite"))
    it.allocate_tensors()
    q = []
    for img in x:
        it.set_tensor(it.get_input_details()[0]["index"], img[None])
        it.invoke()
        q.append(it.get_tensor(it.get_output_details()[0]["index"])[0].astype(np.int32))
    f_top, q_scores = log_p.argmax(1), np.array(q)
    top2 = np.sort(log_p, 1)
    clear = top2[:, -1] - top2[:, -2] >= 0.5
    assert clear.sum() >= 24, clear.sum()  # most photos are not near ties
    np.testing.assert_array_equal(q_scores.argmax(1)[clear], f_top[clear])
    assert np.mean(q_scores.argmax(1) == f_top) >= 0.85
    assert np.all(np.any(np.argsort(-q_scores, 1)[:, :3] == f_top[:, None], 1))
