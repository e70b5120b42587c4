"""TFLite metadata written into the shipped int8 model: LiteRT runs it unchanged, MediaPipe Tasks reads the labels."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset, stratified_sample
from converter.errors import ModelError
from converter.evaluation.evaluate import tflite_predict
from converter.export.convert import add_metadata
from converter.export.metadata import LABELS_FILE, METADATA_NAME, ClassifierMetadata, build_metadata, write_classifier_metadata
from edge_app.model import load_labels, make_interpreter

MEDIAPIPE_MISSING = "mediapipe is not installed (pip install --no-deps mediapipe==0.10.35)"


def _tflite_metadata(path: Path) -> tuple[list[str], bytes]:
    """The model's metadata entry names and its TFLITE_METADATA buffer, read with LiteRT's schema code."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    entry = model.Metadata(names.index(METADATA_NAME))
    return names, model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()


@pytest.fixture(scope="module")
def labels(default_model: Path) -> list[str]:
    return load_labels(default_model / "labels.txt")


@pytest.fixture(scope="module")
def with_metadata(default_model: Path, labels: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metadata") / "model.tflite"
    shutil.copyfile(default_model / "model.tflite", path)
    assert add_metadata(path, labels) is True
    return path


@pytest.fixture(scope="module")
def images(cifar10_val: Dataset) -> Dataset:
    """Three real held-out CIFAR-10 images per class."""
    return cifar10_val.subset(stratified_sample(cifar10_val.y, 3, seed=2))


def test_litert_gives_identical_outputs(with_metadata: Path, default_model: Path, images: Dataset) -> None:
    before = tflite_predict(default_model / "model.tflite", images.x)
    after = tflite_predict(with_metadata, images.x)
    assert after.shape == (len(images), 10)
    np.testing.assert_array_equal(after, before)
    assert np.allclose(after.sum(1), 1.0, atol=0.05) and len(np.unique(np.argmax(after, 1))) >= 3  # varied probabilities, not a constant
    interp = make_interpreter(with_metadata)
    assert interp.get_input_details()[0]["dtype"] == np.uint8 and interp.get_output_details()[0]["dtype"] == np.uint8


def test_metadata_entry_is_added_once_and_earlier_entries_kept(with_metadata: Path, default_model: Path, labels: list[str], tmp_path: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    original = schema.Model.GetRootAs((default_model / "model.tflite").read_bytes(), 0)
    # the shipped model may carry metadata already: it is replaced, the other entries are kept
    kept = [n for i in range(original.MetadataLength()) if (n := original.Metadata(i).Name().decode()) != METADATA_NAME]
    names, buf = _tflite_metadata(with_metadata)
    assert names == [*kept, METADATA_NAME]
    assert buf[4:8] == b"M001"
    # writing again replaces the entry and the packed files: same bytes, still one entry and one labels.txt
    again = tmp_path / "again.tflite"
    shutil.copyfile(with_metadata, again)
    write_classifier_metadata(again, labels)
    assert again.read_bytes() == with_metadata.read_bytes()


def test_labels_are_a_readable_stored_zip_at_the_end(with_metadata: Path, labels: list[str]) -> None:
    with zipfile.ZipFile(with_metadata) as zf:
        assert zf.namelist() == [LABELS_FILE]
        assert zf.getinfo(LABELS_FILE).compress_type == zipfile.ZIP_STORED
        assert zf.read(LABELS_FILE).decode().split("\n") == labels


def test_metadata_fields_read_back_with_the_official_schema(with_metadata: Path) -> None:
    schema = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated", reason=MEDIAPIPE_MISSING)
    _, buf = _tflite_metadata(with_metadata)
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    meta = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(buf, 0))
    assert meta.name == b"ImageClassifier" and meta.version and meta.minParserVersion == b"1.0.0"
    (graph,) = meta.subgraphMetadata
    (inp,), (out,) = graph.inputTensorMetadata, graph.outputTensorMetadata
    assert inp.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert inp.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    (unit,) = inp.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]
    assert list(inp.stats.min) == [0.0] and list(inp.stats.max) == [255.0]
    assert out.content.contentPropertiesType == schema.ContentProperties.FeatureProperties
    (labels_file,) = out.associatedFiles
    assert labels_file.name == LABELS_FILE.encode() and labels_file.type == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    gray = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(build_metadata(ClassifierMetadata(labels=("a", "b"), channels=1)), 0))
    assert gray.subgraphMetadata[0].inputTensorMetadata[0].content.contentProperties.colorSpace == schema.ColorSpaceType.GRAYSCALE


def test_mediapipe_image_classifier_loads_it_with_the_labels(with_metadata: Path, images: Dataset, labels: list[str]) -> None:
    vision = pytest.importorskip("mediapipe.tasks.python.vision", reason=MEDIAPIPE_MISSING)
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    ours = tflite_predict(with_metadata, images.x)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(with_metadata)))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for rgb, scores in zip(images.x, ours, strict=True):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
            categories = result.classifications[0].categories
            assert sorted(c.index for c in categories) == list(range(10))
            assert {c.index: c.category_name for c in categories} == dict(enumerate(labels))
            mp_scores = np.zeros(10, np.float32)
            for c in categories:
                mp_scores[c.index] = c.score
            np.testing.assert_allclose(mp_scores, scores, atol=1e-6)
            best = {labels[i] for i in np.flatnonzero(scores == scores.max())}  # ties are ordered differently
            assert categories[0].category_name in best


def test_bad_input_is_a_clear_error(default_model: Path, labels: list[str], tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copyfile(default_model / "model.tflite", model)
    with pytest.raises(ModelError, match="output shape \\[1, 10\\] but 3 labels"):
        write_classifier_metadata(model, labels[:3])
    assert model.read_bytes() == (default_model / "model.tflite").read_bytes()
    not_tflite = tmp_path / "labels.tflite"
    not_tflite.write_text("\n".join(labels))
    with pytest.raises(ModelError, match="is not a TFLite model"):
        write_classifier_metadata(not_tflite, labels)
