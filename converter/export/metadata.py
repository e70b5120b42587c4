"""Standard TFLite model metadata for an image classifier, written without MediaPipe's metadata writer.

``write_classifier_metadata(model, labels)`` embeds what MediaPipe Tasks' ``ImageClassifier`` (and any
other TFLite metadata reader) needs: a ``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``,
identifier ``M001``) with the input image's colour space and normalisation and the output's label file,
stored as the model's ``TFLITE_METADATA`` buffer, plus ``labels.txt`` in a zip archive appended to the
model file. This is what MediaPipe's ``MetadataPopulator`` writes; the model stays a valid TFLite
flatbuffer that LiteRT loads and runs unchanged. (MediaPipe's ``ImageClassifier`` takes 3-channel
models only; grayscale models get valid ``GRAYSCALE`` metadata that it refuses.)

The few metadata tables are built here with ``flatbuffers.Builder``; field slots follow
``metadata_schema.fbs`` (schema 1.5.0). The TFLite model itself is read and re-packed with the
generated object API of LiteRT's (or TensorFlow's) ``schema_py_generated``.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from converter import __version__
from converter.errors import ModelError

log = logging.getLogger(__name__)

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# Every field written here exists since metadata schema 1.0.0, the smallest version "M001" allows.
MIN_PARSER_VERSION = "1.0.0"
BUFFER_ALIGNMENT = 16  # schema.fbs: Buffer.data (force_align: 16)
DESCRIPTION = "Identify the most prominent object in the image from a known set of categories."
AUTHOR = "edge-recognition convert-model"

# Enum values and union type codes of metadata_schema.fbs.
COLOR_SPACE_RGB = 1
COLOR_SPACE_GRAYSCALE = 2
ASSOCIATED_FILE_TENSOR_AXIS_LABELS = 2
CONTENT_FEATURE_PROPERTIES = 1
CONTENT_IMAGE_PROPERTIES = 2
PROCESS_UNIT_NORMALIZATION = 1

# TFLite schema TensorType codes and the value ranges MediaPipe records as tensor stats.
TENSOR_FLOAT32 = 0
TENSOR_UINT8 = 3
TENSOR_TYPE_NAMES = {0: "float32", 2: "int32", 3: "uint8", 9: "int8"}


@dataclass(frozen=True)
class ClassifierMetadata:
    """What the metadata says about an image classifier."""

    labels: tuple[str, ...]
    channels: int
    name: str = "ImageClassifier"
    description: str = DESCRIPTION
    version: str = __version__
    author: str = AUTHOR
    license: str = ""
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    input_range: tuple[float, float] | None = (0.0, 255.0)
    output_range: tuple[float, float] | None = (0.0, 255.0)


# --------------------------------------------------------------------------- the metadata flatbuffer


class _Tables:
    """Writers of the metadata_schema.fbs tables used here (slot numbers from the schema's field order)."""

    def __init__(self, builder: flatbuffers.Builder) -> None:
        self.b = builder

    def string(self, text: str) -> int | None:
        return self.b.CreateString(text) if text else None

    def floats(self, values: Sequence[float]) -> int:
        return int(self.b.CreateNumpyVector(np.asarray(values, dtype="<f4")))

    def offsets(self, items: Sequence[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return int(self.b.EndVector())

    def table(self, n_slots: int, offsets: dict[int, int | None], bytes_: dict[int, int] | None = None) -> int:
        """A table with offset fields and ubyte/byte fields (enums, union types), by slot."""
        self.b.StartObject(n_slots)
        for slot, off in offsets.items():
            if off is not None:
                self.b.PrependUOffsetTRelativeSlot(slot, off, 0)
        for slot, value in (bytes_ or {}).items():
            self.b.PrependUint8Slot(slot, value, 0)
        return int(self.b.EndObject())

    def associated_file(self, name: str, description: str, file_type: int) -> int:
        # AssociatedFile: name 0, description 1, type 2, locale 3, version 4
        return self.table(5, {0: self.string(name), 1: self.string(description)}, {2: file_type})

    def stats(self, lo_hi: tuple[float, float] | None) -> int | None:
        # Stats: max 0, min 1
        if lo_hi is None:
            return None
        return self.table(2, {0: self.floats([lo_hi[1]]), 1: self.floats([lo_hi[0]])})

    def content(self, kind: int, properties: int) -> int:
        # Content: content_properties_type 0, content_properties 1, range 2
        return self.table(3, {1: properties}, {0: kind})

    def normalization(self, mean: Sequence[float], std: Sequence[float]) -> int:
        # NormalizationOptions: mean 0, std 1; ProcessUnit: options_type 0, options 1
        options = self.table(2, {0: self.floats(mean), 1: self.floats(std)})
        return self.table(2, {1: options}, {0: PROCESS_UNIT_NORMALIZATION})

    def tensor(self, name: str, description: str, content: int, *, process_units: Sequence[int] = (),
               stats: int | None = None, files: Sequence[int] = ()) -> int:
        # TensorMetadata: name 0, description 1, dimension_names 2, content 3, process_units 4, stats 5, associated_files 6
        return self.table(7, {
            0: self.string(name), 1: self.string(description), 3: content,
            4: self.offsets(process_units) if process_units else None, 5: stats, 6: self.offsets(files) if files else None,
        })


def build_metadata(meta: ClassifierMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) of an image classifier."""
    if meta.channels not in (1, 3):
        raise ModelError(f"metadata describes RGB or grayscale images, but the model's input has {meta.channels} channels")
    if len(meta.mean) != len(meta.std) or not meta.mean or any(s == 0 for s in meta.std):
        raise ModelError(f"normalisation mean {list(meta.mean)} and std {list(meta.std)} must be non-empty, of equal length, std non-zero")
    t = _Tables(flatbuffers.Builder(1024))
    # ImageProperties: color_space 0, default_size 1
    image = t.table(2, {}, {0: COLOR_SPACE_RGB if meta.channels == 3 else COLOR_SPACE_GRAYSCALE})
    inp = t.tensor(
        "image", "Input image to be classified.", t.content(CONTENT_IMAGE_PROPERTIES, image),
        process_units=[t.normalization(meta.mean, meta.std)], stats=t.stats(meta.input_range),
    )
    labels = t.associated_file(LABELS_FILE, "Labels for categories that the model can recognize.", ASSOCIATED_FILE_TENSOR_AXIS_LABELS)
    out = t.tensor(
        "probability", "Probabilities of the labels respectively.", t.content(CONTENT_FEATURE_PROPERTIES, t.table(0, {})),
        stats=t.stats(meta.output_range), files=[labels],
    )
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3, ...
    subgraph = t.table(10, {2: t.offsets([inp]), 3: t.offsets([out])})
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5, associated_files 6,
    # min_parser_version 7
    root = t.table(8, {
        0: t.string(meta.name), 1: t.string(meta.description), 2: t.string(meta.version), 3: t.offsets([subgraph]),
        4: t.string(meta.author), 5: t.string(meta.license), 7: t.string(MIN_PARSER_VERSION),
    })
    t.b.Finish(root, METADATA_IDENTIFIER)
    return bytes(t.b.Output())


# --------------------------------------------------------------------------- the model


def _schema() -> Any:
    """The generated TFLite schema module (LiteRT's; TensorFlow's where LiteRT is not installed)."""
    try:
        from ai_edge_litert import schema_py_generated  # noqa: PLC0415
    except ImportError:
        from tensorflow.lite.python import schema_py_generated  # noqa: PLC0415
    return schema_py_generated


class _AlignedBuffer:
    """A model buffer packed with its data 16-byte aligned, as the TFLite converter lays it out."""

    def __init__(self, schema: Any, buffer: Any) -> None:
        self.schema, self.data, self.offset, self.size = schema, buffer.data, buffer.offset, buffer.size

    def Pack(self, builder: flatbuffers.Builder) -> int:
        """Called by the generated ``ModelT.Pack`` in place of ``BufferT.Pack``."""
        data = None
        if self.data is not None:
            arr = np.asarray(self.data, dtype=np.uint8).ravel()
            builder.Prep(BUFFER_ALIGNMENT, arr.size)
            data = builder.CreateNumpyVector(arr)
        s = self.schema
        s.BufferStart(builder)
        if data is not None:
            s.BufferAddData(builder, data)
        s.BufferAddOffset(builder, self.offset)
        s.BufferAddSize(builder, self.size)
        return int(s.BufferEnd(builder))


def _image_classifier_io(model: Any, n_labels: int) -> tuple[int, int, int]:
    """(channels, input type, output type) of a one-subgraph ``[1, H, W, C]`` to ``[1, classes]`` model (a schema ``Model``)."""
    if model.SubgraphsLength() != 1:
        raise ModelError(f"expected a model with one subgraph, got {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ModelError(f"expected an image classifier with one input and one output, got {graph.InputsLength()} inputs and "
                         f"{graph.OutputsLength()} outputs")
    inp, out = graph.Tensors(graph.Inputs(0)), graph.Tensors(graph.Outputs(0))
    in_shape = [int(inp.Shape(i)) for i in range(inp.ShapeLength())]
    out_shape = [int(out.Shape(i)) for i in range(out.ShapeLength())]
    if len(in_shape) != 4 or in_shape[3] not in (1, 3):
        raise ModelError(f"expected an image input [1, H, W, 1 or 3], got {in_shape}")
    if out_shape[-1:] != [n_labels]:
        raise ModelError(f"the model has output shape {out_shape} but {n_labels} labels were given; pass one label per class")
    return in_shape[3], int(inp.Type()), int(out.Type())


def _value_range(tensor_type: int, is_input: bool) -> tuple[float, float] | None:
    """The stats MediaPipe's writer records: 0-255 for uint8, pixels or probabilities for float32, none otherwise."""
    if tensor_type == TENSOR_UINT8:
        return (0.0, 255.0)
    if tensor_type == TENSOR_FLOAT32:
        return (0.0, 255.0) if is_input else (0.0, 1.0)
    return None


def populate(model_buf: bytes, metadata_buf: bytes, files: dict[str, bytes]) -> bytes:
    """``model_buf`` with ``metadata_buf`` as its ``TFLITE_METADATA`` buffer and ``files`` zipped at the end.

    An existing ``TFLITE_METADATA`` entry is replaced, and files packed earlier are dropped.
    """
    schema = _schema()
    if len(model_buf) < 8 or not schema.Model.ModelBufferHasIdentifier(model_buf, 0):
        raise ModelError("not a TFLite model (no TFL3 identifier); pass the model.tflite written by the converter")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_buf, 0))
    buffers = list(model.buffers or [])
    if any(int(b.offset or 0) > 1 for b in buffers):
        raise ModelError("the model keeps its weights outside the flatbuffer (a model over 2 GB); metadata cannot be added to it")
    entry = schema.BufferT()
    entry.data = np.frombuffer(metadata_buf, dtype=np.uint8)
    metas = list(model.metadata or [])
    existing = [m for m in metas if m.name is not None and bytes(m.name).decode("utf-8", "replace") == METADATA_NAME]
    if existing:
        for m in existing:
            buffers[m.buffer] = entry
    else:
        buffers.append(entry)
        named = schema.MetadataT()
        named.name = METADATA_NAME
        named.buffer = len(buffers) - 1
        metas.append(named)
    model.buffers = [_AlignedBuffer(schema, b) for b in buffers]
    model.metadata = metas
    builder = flatbuffers.Builder(len(model_buf) + len(metadata_buf) + 1024)
    builder.Finish(model.Pack(builder), TFLITE_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    # Stored, not deflated: metadata readers hand out the files in place, inside the model buffer. A fixed
    # timestamp keeps the output reproducible.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def write_classifier_metadata(model: Path, labels: Sequence[str], *, name: str = "ImageClassifier", description: str = DESCRIPTION,
                              version: str = __version__) -> ClassifierMetadata:
    """Embed image-classifier metadata and ``labels.txt`` into the ``.tflite`` file ``model``, in place.

    The input is described as raw pixels (normalisation mean 0, std 1), RGB or grayscale after its channels;
    ``version`` defaults to the converter's version.
    """
    if not labels or any(not str(x).strip() or "\n" in str(x) for x in labels):
        raise ModelError("labels must be a non-empty list of one-line, non-blank class names")
    try:
        buf = model.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {model}: {exc.strerror or exc}") from exc
    schema = _schema()
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise ModelError(f"{model} is not a TFLite model; pass the model.tflite written by convert-model")
    channels, in_type, out_type = _image_classifier_io(schema.Model.GetRootAs(buf, 0), len(labels))
    meta = ClassifierMetadata(
        labels=tuple(str(x) for x in labels), channels=channels, name=name, description=description, version=version,
        input_range=_value_range(in_type, True), output_range=_value_range(out_type, False),
    )
    data = populate(buf, build_metadata(meta), {LABELS_FILE: "\n".join(meta.labels).encode("utf-8")})
    model.write_bytes(data)
    log.info("wrote TFLite metadata into %s (%s, %d labels, %s input %s)", model, name, len(labels),
             TENSOR_TYPE_NAMES.get(in_type, in_type), "RGB" if channels == 3 else "grayscale")
    return meta
