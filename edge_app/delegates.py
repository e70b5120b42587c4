"""Hardware acceleration: ``--delegate cpu|edgetpu|auto`` and Edge TPU device strings (``usb:0``).

The Edge TPU runs through the runtime's ``load_delegate`` with ``libedgetpu`` and a model compiled
by ``edgetpu_compiler`` (``model_edgetpu.tflite`` beside ``model.tflite``, or the manifest's
``edgetpu_model``). ``auto`` uses the Edge TPU when one is present and falls back to the CPU with a
warning. Loading goes through a ``DelegateLoader`` (default: the runtime's ``load_delegate``), so the
fallback logic can be exercised without the hardware.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.config.values import DELEGATES, parse_device
from edge_app.errors import ConfigError, DelegateError, ModelError
from edge_app.model import Classifier, Manifest, ModelFiles
from edge_app.runtime import get_runtime

log = logging.getLogger(__name__)

EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
NO_EDGETPU = "No Edge TPU found: plug in the Coral USB stick (and install libedgetpu1-std) or run with --delegate cpu"

# (library file, options) -> a delegate object for the interpreter; raises when it cannot load
DelegateLoader = Callable[[str, dict[str, str]], Any]


def edgetpu_library(system: str | None = None) -> str:
    """The ``libedgetpu`` file name for this (or the named) operating system."""
    return EDGETPU_LIBRARIES.get(system or platform.system(), EDGETPU_LIBRARIES["Linux"])


def runtime_loader(library: str, options: dict[str, str]) -> Any:
    """The real loader: the chosen TFLite runtime's ``load_delegate``."""
    return get_runtime().load_delegate(library, options)


@contextlib.contextmanager
def _quiet_failed_delegate() -> Iterator[None]:
    """Silence the ``Exception ignored in Delegate.__del__`` noise a failed ``load_delegate`` leaves behind."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if "Delegate" in repr(getattr(unraisable, "object", "")) and isinstance(unraisable.exc_value, AttributeError):
            log.debug("ignored a half-built delegate's cleanup error: %s", unraisable.exc_value)
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def load_edgetpu(device: str | None = None, loader: DelegateLoader | None = None) -> Any:
    """The Edge TPU delegate for ``device`` (the first one when None), or ``DelegateError`` (``NO_EDGETPU``)."""
    library = edgetpu_library()
    options = {"device": device} if device else {}
    failure: str | None = None
    with _quiet_failed_delegate():
        try:
            delegate = (loader or runtime_loader)(library, options)
        except (OSError, ValueError, RuntimeError) as exc:
            failure = f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
    if failure is not None:
        log.debug("loading %s with %s failed: %s", library, options or "no options", failure)
        raise DelegateError(NO_EDGETPU)
    log.info("Edge TPU delegate loaded (%s%s)", library, f", device {device}" if device else "")
    return delegate


def edgetpu_model(files: ModelFiles) -> Path:
    """Where the Edge TPU model should be: the manifest's ``edgetpu_model``, else ``<name>_edgetpu.tflite`` beside the model."""
    folder = files.model.parent
    if files.manifest is not None:
        named = Manifest.read(files.manifest).edgetpu_model
        if named:
            return folder / named
    return folder / f"{files.model.stem}_edgetpu.tflite"


@dataclass(frozen=True)
class Acceleration:
    """What runs the model: ``name`` is ``cpu`` or ``edgetpu``; ``model_path`` the file the interpreter loads."""

    name: str
    model_path: Path
    delegates: Sequence[Any] = ()


def choose(delegate: str, files: ModelFiles, device: str | None = None, loader: DelegateLoader | None = None) -> Acceleration:
    """Pick CPU or Edge TPU for ``--delegate``; ``auto`` falls back to the CPU with a warning."""
    if delegate not in DELEGATES:
        raise ConfigError(f"--delegate must be one of {', '.join(DELEGATES)}, got {delegate!r}")
    cpu = Acceleration("cpu", files.model)
    if delegate == "cpu":
        return cpu
    try:
        tpu = load_edgetpu(parse_device(device), loader)
    except DelegateError:
        if delegate == "auto":
            log.warning("no Edge TPU found (plug in the Coral and install libedgetpu1-std to use it); running on the CPU")
            return cpu
        raise
    path = edgetpu_model(files)
    if not path.exists():
        message = (
            f"an Edge TPU is present but there is no Edge TPU model {path}: compile the model with "
            f"`edgetpu_compiler -o {path.parent} {files.model}` (convert-model does it when edgetpu_compiler is installed)"
        )
        if delegate == "auto":
            log.warning("%s; running on the CPU", message)
            return cpu
        raise DelegateError(f"{message}, or run with --delegate cpu")
    return Acceleration("edgetpu", path, (tpu,))


MAX_DEFAULT_THREADS = 4
ONE_THREAD_BELOW_MS = 1.0  # a model whose one-thread invoke() is faster than this keeps one thread
PROBE_RUNS = 3  # timed invokes (after a warm-up) that decide it


def default_threads() -> int:
    """The most threads ``--threads``' default uses: the cores this process may use, at most 4.

    Measured with ``bash benchmarks/threads.sh`` (docs/performance.md): on 2 cores, 2 threads make
    the 224 px model's pipeline 1.4-1.7x faster than one, while 4 threads (the TF-Lite Raspberry Pi
    example's default) are slower than 2 there.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cores))


def auto_threads(files: ModelFiles) -> Classifier:
    """``--threads``' default, chosen for this model on this machine: one thread if one ``invoke()`` takes under
    ``ONE_THREAD_BELOW_MS`` on one thread, else ``default_threads()``.

    Below a millisecond a second thread saves at most half of it, invisible at camera rates, yet it
    takes the core that capture and decoding need and costs CPU to synchronise: the 32x32 CIFAR-10
    model (0.2 ms on one Xeon core) runs its pipeline faster and with less CPU per frame on one
    thread than on two (``benchmarks/threads.sh``). Deciding costs a warm-up and ``PROBE_RUNS`` invokes.
    """
    one = Classifier(files, 1)
    most = default_threads()
    if most == 1:
        return one
    ms = 1e3 * min(one.time_invoke(PROBE_RUNS))
    if ms < ONE_THREAD_BELOW_MS:
        log.debug("invoke() takes %.2f ms on one thread (< %g ms): one interpreter thread", ms, ONE_THREAD_BELOW_MS)
        return one
    log.debug("invoke() takes %.2f ms on one thread: %d interpreter threads", ms, most)
    return Classifier(files, most)


def _on_cpu(files: ModelFiles, threads: int | None) -> Classifier:
    """On the CPU: the threads asked for, else the measured default (``auto_threads``)."""
    return Classifier(files, threads) if threads else auto_threads(files)


def load_classifier(
    files: ModelFiles,
    delegate: str = "cpu",
    device: str | None = None,
    threads: int | None = None,
    loader: DelegateLoader | None = None,
) -> tuple[Classifier, Acceleration]:
    """A ready ``Classifier`` on the chosen accelerator; ``auto`` falls back to the CPU if the Edge TPU model fails to load."""
    acceleration = choose(delegate, files, device, loader)
    if acceleration.name == "cpu":
        return _on_cpu(files, threads), acceleration
    threads = threads or default_threads()  # the Edge TPU runs the model; these threads only run what it cannot
    try:
        return Classifier(files, threads, acceleration.delegates, model_path=acceleration.model_path), acceleration
    except ModelError as exc:
        if delegate == "auto":
            log.warning("the Edge TPU model could not be loaded (%s); running on the CPU", exc)
            cpu = Acceleration("cpu", files.model)
            return _on_cpu(files, threads), cpu
        raise DelegateError(
            f"the Edge TPU could not run {acceleration.model_path.name}: {exc}; recompile it with edgetpu_compiler or run with --delegate cpu"
        ) from exc
