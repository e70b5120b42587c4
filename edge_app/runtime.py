"""The one place that chooses a TFLite runtime: ai_edge_litert, then tflite_runtime, then tensorflow.lite.

Everything else asks this module for ``Interpreter`` and ``load_delegate``. ``native_stderr_as_debug``
keeps the runtime's own console lines (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``)
out of the user's stderr: they become debug messages, shown with ``-v``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from edge_app.errors import RuntimeMissingError

log = logging.getLogger(__name__)

# (module holding Interpreter and load_delegate, name shown to the user)
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow.lite"),
)


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]


@cache
def get_runtime(preferred: str | None = None) -> Runtime:
    """The first importable runtime (or ``preferred`` by its display name)."""
    errors = []
    for module_name, name in CANDIDATES:
        if preferred and name != preferred:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        top = importlib.import_module(module_name.split(".")[0])
        version = str(getattr(top, "__version__", "") or getattr(module, "__version__", "") or "unknown")
        log.debug("using TFLite runtime %s %s", name, version)
        return Runtime(name, version, module.Interpreter, module.load_delegate)
    raise RuntimeMissingError(f"no TFLite runtime found; {install_hint()} (" + "; ".join(errors) + ")")


def is_32bit_arm(machine: str | None = None, pointer_bytes: int | None = None) -> bool:
    """A 32-bit ARM Python: armv6l/armv7l, or 32-bit Raspberry Pi OS on a 64-bit kernel (uname says aarch64)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    pointer_bytes = pointer_bytes if pointer_bytes is not None else struct.calcsize("P")
    if machine in ("aarch64", "arm64"):
        return pointer_bytes == 4
    return machine.startswith("arm")


def install_hint(machine: str | None = None, pointer_bytes: int | None = None) -> str:
    """What to install: ai-edge-litert, except on 32-bit ARM, where it has no wheels."""
    if is_32bit_arm(machine, pointer_bytes):
        return (
            "ai-edge-litert has no 32-bit ARM (armhf/armv7l) wheels: install tflite-runtime "
            "(pip install tflite-runtime, 2.14 for Python 3.11, with apt's python3-numpy: it needs NumPy < 2), "
            "or use 64-bit Raspberry Pi OS"
        )
    return "install one with: pip install ai-edge-litert"


@contextlib.contextmanager
def native_stderr_as_debug(source: str = "litert") -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 meanwhile; its ``INFO:`` lines become debug messages.

    Every other line (a real error from the runtime, or another thread's output) is written back to
    stderr unchanged when the block ends, so nothing is lost, only delayed.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no usable stderr descriptor: nothing to capture
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if line.startswith("INFO: "):
                    log.debug("%s: %s", source, line[6:].rstrip())
                else:
                    os.write(2, line.encode("utf-8", "replace"))
