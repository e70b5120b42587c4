"""The model slot: the model the loop runs, opened at start, reloaded on a thread of its own, swapped in between frames.

``load()`` opens the model at start (seeding the device's own ``--model`` folder from a shipped bundle on the first start,
and recovering an incomplete folder with ``edge_app.bundles``). ``request_reload()`` (SIGHUP) asks for a reload;
``poll()``, called by the frame loop between two frames, starts it on a thread that opens the new bundle and classifies
the newest frame with it while the old model goes on classifying, and swaps it in once it is open. A bundle that fails
to load or to classify is refused with one log line and the old one keeps running. ``reload_and_wait()`` (POST
/api/reload, the model-url poller, the models page) requests a reload and waits for its outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_app import bundles
from edge_app.delegates import Acceleration, DelegateLoader, load_classifier
from edge_app.errors import EdgeAppError
from edge_app.model import Classifier, ModelFiles, resolve_model, shipped_models
from edge_app.pipeline import LOGGER
from edge_app.runtime import get_runtime

log = logging.getLogger(LOGGER)

RELOAD_JOIN_S = 30.0  # at shutdown, the longest wait for a reload still opening its model

OpenModel = tuple[ModelFiles, Classifier, Acceleration, str]  # files, classifier, acceleration, model id
Opener = Callable[[Path | None], OpenModel]  # opens --model (or the given folder), rereading it from disk


def bundle_name(files: ModelFiles) -> str:
    """``cifar10`` for ``models/cifar10/model.tflite``; the file name for any other model file."""
    return files.model.parent.name if files.model.name == "model.tflite" else files.model.name


def runtime_name() -> str:
    try:
        rt = get_runtime()
    except Exception:
        return "none"
    return f"{rt.name} {rt.version}"


def threads_text(threads: int | None) -> str:
    return "the runtime's default threads" if threads is None else f"{threads} interpreter thread{'' if threads == 1 else 's'}"


def open_model(model: Path | None, labels: Path | None, *, delegate: str, device: str | None, threads: int | None,
               loader: DelegateLoader | None = None) -> OpenModel:
    """Open ``model`` with its labels on the delegate: its files, classifier, acceleration and id (``cifar10@1a2b3c4d``)."""
    files = resolve_model(model, labels)
    classifier, acceleration = load_classifier(files, delegate, device, threads, loader)
    return files, classifier, acceleration, f"{bundle_name(files)}@{classifier.sha256[:8]}"


@dataclass
class _Loading:
    """A reload in progress: the newest frame to check the new model on, and what the loading thread made of it."""

    image: np.ndarray | None
    thread: threading.Thread = field(init=False)
    started: float = field(default_factory=time.perf_counter)
    model: OpenModel | None = None
    error: str | None = None


@dataclass(frozen=True)
class Swap:
    """A model just swapped in: the one it replaced, and whether both have the same labels."""

    old: Classifier | None
    new: Classifier
    files: ModelFiles
    same_labels: bool


class ModelSlot:
    """The running model and its reloads. ``opener`` opens ``--model`` (rereading it); ``stop`` ends every wait for a reload."""

    def __init__(self, opener: Opener, stop: threading.Event) -> None:
        self.opener = opener
        self.classifier: Classifier | None = None
        self.acceleration: Acceleration | None = None
        self.files: ModelFiles | None = None
        self.model_id: str | None = None  # "cifar10@1a2b3c4d": the bundle's name and the sha256 prefix of the model it runs
        self.reloads = 0
        self.last_image: np.ndarray | None = None  # the newest classified frame: a reloaded model's test input (set by the loop)
        self._stop = stop
        self._reload = threading.Event()  # SIGHUP: reload the model between frames
        self._cond = threading.Condition()  # POST /api/reload waits on it for the outcome
        self._seq = 0
        self._outcome: dict[str, Any] = {}
        self._loading: _Loading | None = None  # a reload opening the new model off the frame loop

    @property
    def name(self) -> str | None:
        """The bundle's name (``cifar10``); None before the model is open."""
        return bundle_name(self.files) if self.files else None

    def load(self, model: Path | None, seed: str | None) -> None:
        """Open the model at start: ``seed`` a missing device model folder from a shipped bundle, recover an incomplete one."""
        if model is not None and seed is not None and bundles.seedable(model, shipped_models()):  # the device's own model folder, first start
            bundles.seed(model, resolve_model(Path(seed)).model.parent)
            log.info("model folder %s did not exist: made it a copy of the shipped %s bundle (the models page deploys there)", model, seed)
        # a --model folder left incomplete (a switch killed half-way, a damaged file): the previous complete bundle, one warning
        model = bundles.recover(model) if model is not None else None
        self.files, self.classifier, self.acceleration, self.model_id = self.opener(model)
        self._log_model("model")

    def _log_model(self, what: str) -> None:
        assert self.classifier is not None and self.files is not None and self.acceleration is not None
        h, w = self.classifier.size
        log.info(
            "%s %s (%s): %dx%dx%d input, %d classes, %s on %s, %s",
            what,
            self.files.model,
            self.model_id,
            h,
            w,
            self.classifier.channels,
            len(self.classifier.labels),
            runtime_name(),
            self.acceleration.name,
            threads_text(self.classifier.threads),
        )

    # ------------------------------------------------------------------ reloads

    def request_reload(self) -> None:
        """Ask for a reload before the next frame (thread- and signal-safe)."""
        self._reload.set()

    def reload_and_wait(self, timeout: float = 30.0) -> dict[str, Any]:
        """Request a reload and wait for the loop to try it: ``{"ok", "model", "error"}`` (``pending`` when it has not yet)."""
        with self._cond:
            seq = self._seq
            self.request_reload()
            done = self._cond.wait_for(lambda: self._seq != seq or self._stop.is_set(), timeout)
            if not done or self._seq == seq:
                return {"ok": False, "pending": True, "model": self.model_id, "error": "the loop has not reached the next frame yet"}
            return dict(self._outcome)

    def poll(self, on_swap: Callable[[Swap], None]) -> None:
        """Between two frames: start a requested reload, or finish one whose model is open (``on_swap`` before it is announced)."""
        if self._loading is None and self._reload.is_set():
            self._start_reload()
        if self._loading is not None and not self._loading.thread.is_alive():
            self._finish_reload(on_swap)

    def _start_reload(self) -> None:
        """Open and check the model the config names (reread from disk) on a thread of its own, so that classifying goes on meanwhile."""
        self._reload.clear()
        loading = _Loading(self.last_image)

        def load() -> None:
            try:
                files, classifier, acceleration, new_id = self.opener(None)
                if loading.image is not None:
                    scores = classifier.scores(loading.image)
                    if not np.all(np.isfinite(scores)):
                        raise EdgeAppError("it gives non-finite scores on the newest frame")
                loading.model = (files, classifier, acceleration, new_id)
            except Exception as exc:  # any failure refuses the new model; the old one keeps running
                loading.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

        loading.thread = threading.Thread(target=load, name="model-reload", daemon=True)
        self._loading = loading
        loading.thread.start()

    def _finish_reload(self, on_swap: Callable[[Swap], None]) -> bool:
        """Once the new model is open: swap it in, or say why not and keep the old one; tell the waiters."""
        loading = self._loading
        assert loading is not None
        self._loading = None
        ok = False
        error: str | None = loading.error
        if error is not None:
            log.error("model reload refused: %s; still running %s", error, self.model_id)
        else:
            assert loading.model is not None
            ok = self._swap_in(loading.model, time.perf_counter() - loading.started, on_swap)
        with self._cond:
            self._outcome = {"ok": ok, "model": self.model_id, "error": error}
            self._seq += 1
            self._cond.notify_all()
        return ok

    def _swap_in(self, model: OpenModel, seconds: float, on_swap: Callable[[Swap], None]) -> bool:
        files, classifier, acceleration, new_id = model
        old, old_id = self.classifier, self.model_id
        same_labels = old is not None and list(old.labels) == list(classifier.labels)
        self.files, self.classifier, self.acceleration, self.model_id = files, classifier, acceleration, new_id
        self.reloads += 1
        on_swap(Swap(old, classifier, files, same_labels))
        self._log_model(f"reloaded (was {old_id}; opened in {seconds * 1e3:.0f} ms while the old one classified):")
        return True

    def close(self) -> None:
        """At shutdown: let a reload still opening its model finish (then drop it); wake every waiter (no reload will come)."""
        if self._loading is not None:
            self._loading.thread.join(timeout=RELOAD_JOIN_S)
        with self._cond:
            self._cond.notify_all()
