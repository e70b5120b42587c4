"""The one place that chooses a TFLite runtime: ai_edge_litert, then tflite_runtime, then tensorflow.lite.

Everything else asks this module for ``Interpreter`` and ``load_delegate``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
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
    raise RuntimeMissingError(
        "no TFLite runtime found; install one with: pip install ai-edge-litert ("
        + "; ".join(errors)
        + ")"
    )
