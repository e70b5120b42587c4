"""``ModelDesk``: the models page's back end: the running bundle, the candidate, Deploy, Rollback and Retrain.

* **Running**: the bundle in ``--model DIR`` (its manifest: classes, accuracy, the check split) and the id the frame
  loop runs (``name@sha256``).
* **Candidate**: ``COLLECT/candidate/``, which ``retrain-model COLLECT`` writes with ``retrain_report.json``
  (validation accuracy, per-class recall, confusion, disagreement with the running model).
* **Deploy** installs the candidate into ``--model DIR`` with the one atomic switch every bundle change uses
  (``edge_app.bundles``: a new version, ``DIR`` flipped by one rename, the replaced bundle kept as ``DIR.previous``),
  then asks the frame loop to reload between frames. A bundle the loop refuses is switched back on disk at once
  and the reason returned: the old model never stopped running.
* **Rollback** flips ``DIR`` back to ``DIR.previous`` (itself kept, so a second rollback undoes the first) and reloads.
* **Retrain** runs ``retrain-model COLLECT --current DIR`` as a background job where the converter (TensorFlow) is
  installed, with its log lines as progress; elsewhere the page shows that command to run on a workstation.

Deploy and Rollback need ``--model DIR`` to be a folder of this device's own (``systemd/install.sh`` makes
``/var/lib/edge-app/model``): the shipped bundles inside the package are never written to.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_app import bundles
from edge_app.model import default_model_dir, shipped_models

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
REPORT = "retrain_report.json"
RELOAD_TIMEOUT_S = 120.0
JOB_LINES = 200


class DeskError(Exception):
    """A models-page action that cannot be done now; the message says why and what to do (HTTP 409)."""


def manifest_summary(folder: Path) -> dict[str, Any] | None:
    """What the page shows of a bundle: its classes, accuracy (``training_score``: how train-model scored it, with its 95 %
    interval) and origin, from ``manifest.json`` (None if unreadable)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    keys = ("classes", "accuracy", "training_score", "dataset", "arch", "created", "sha256", "size_bytes", "macs", "input")
    summary = {k: manifest[k] for k in keys if k in manifest}
    summary["folder"] = str(folder)
    return summary


@dataclass
class RetrainJob:
    """One ``retrain-model`` run in the background: its state and its last log lines."""

    command: list[str]
    log_path: Path
    started: float = field(default_factory=time.time)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=JOB_LINES))
    returncode: int | None = None
    process: subprocess.Popen[str] | None = None

    def state(self) -> str:
        if self.returncode is None:
            return "running"
        return "done" if self.returncode == 0 else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state(), "returncode": self.returncode, "started": self.started,
                "seconds": round(time.time() - self.started, 1), "command": shlex.join(self.command), "log": list(self.lines)}


class ModelDesk:
    """Deploy, rollback and retrain for one running app (see the module doc). Thread-safe: one action at a time."""

    def __init__(self, model_dir: Path | None, collect: Path | None, *, reload: Callable[[float], dict[str, Any]],
                 running: Callable[[], str | None], retrain_args: tuple[str, ...] = ()) -> None:
        self.model_dir = model_dir
        self.collect = collect
        self.retrain_args = retrain_args  # more retrain-model flags (e.g. --image-size 160 on a slow device)
        self.reload = reload
        self.running = running
        self.job: RetrainJob | None = None
        self.last_error: str | None = None  # the last refused action's reason, shown on the page
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what the page shows

    @property
    def candidate_dir(self) -> Path | None:
        return self.collect / CANDIDATE if self.collect is not None else None

    def writable_reason(self) -> str | None:
        """Why Deploy and Rollback are not possible here, or None."""
        if self.model_dir is None:
            return ("the app runs a shipped bundle: set model = DIR (a folder of this device's own, e.g. /var/lib/edge-app/model, "
                    "which systemd/install.sh makes) so that bundles can be deployed into it")
        if self.model_dir.suffix == ".tflite":
            return f"model = {self.model_dir} is a file: set model to a bundle folder so that bundles can be deployed into it"
        shipped = shipped_models()
        if self.model_dir.exists() and self.model_dir.resolve() in {default_model_dir(n).resolve() for n in shipped}:
            return f"model = {self.model_dir} is a shipped bundle: copy it to a folder of this device's own and set model to that"
        if str(self.model_dir) in shipped and not self.model_dir.exists():
            return f"model = {self.model_dir} names a shipped bundle: set model to a folder of this device's own"
        parent = self.model_dir.parent
        if not os.access(parent, os.W_OK):
            return f"{parent} is not writable: the bundles of model = {self.model_dir} are switched there"
        return None

    def retrain_available(self) -> bool:
        """Whether ``retrain-model`` can run here (the converter and TensorFlow are installed)."""
        return importlib.util.find_spec("converter") is not None and importlib.util.find_spec("tensorflow") is not None

    def labelled_classes(self) -> dict[str, int]:
        """Images per class in ``COLLECT/train/`` (what retrain-model trains on)."""
        train = self.collect / "train" if self.collect is not None else None
        if train is None or not train.is_dir():
            return {}
        return {d.name: n for d in sorted(train.iterdir()) if d.is_dir() and (n := sum(1 for f in d.iterdir() if f.is_file()))}

    def retrain_command(self) -> list[str]:
        collect = str(self.collect) if self.collect is not None else "COLLECT_DIR"
        cmd = ["retrain-model", collect]
        if self.model_dir is not None:
            cmd += ["--current", str(self.model_dir)]
        return cmd + list(self.retrain_args)

    def overview(self) -> dict[str, Any]:
        """The page's data: running, previous and candidate bundles, what can be done, the job."""
        model_dir = self.model_dir
        running = manifest_summary(model_dir) if model_dir is not None and model_dir.is_dir() else None
        previous = bundles.previous(model_dir) if model_dir is not None else None
        candidate = None
        cand = self.candidate_dir
        if cand is not None and cand.is_dir():
            candidate = manifest_summary(cand) or {"folder": str(cand)}
            try:
                candidate["report"] = json.loads((cand / REPORT).read_text())
            except (OSError, ValueError):
                candidate["report"] = None
            candidate["problem"] = bundles.complete(cand)
        writable = self.writable_reason()
        deploy_blocked = writable or ("no candidate: label collected frames, then retrain" if candidate is None else candidate["problem"])
        return {
            "running": {"model": self.running(), "folder": str(model_dir) if model_dir is not None else None, "manifest": running},
            "previous": self._previous_summary(previous),
            "candidate": candidate,
            "deploy": {"possible": deploy_blocked is None, "why_not": deploy_blocked},
            "rollback": {"possible": writable is None and previous is not None,
                         "why_not": writable or (None if previous is not None else "no previous bundle: nothing was deployed yet")},
            "retrain": {"available": self.retrain_available(), "command": shlex.join(self.retrain_command()),
                        "job": self.job.to_json() if self.job is not None else None},
            "last_error": self.last_error,
        }

    @staticmethod
    def _previous_summary(previous: bundles.Version | None) -> dict[str, Any] | None:
        summary = manifest_summary(previous.path) if previous is not None else None
        return summary | {"version": previous.id} if summary is not None and previous is not None else None

    # ------------------------------------------------------------------ actions

    def deploy(self) -> dict[str, Any]:
        """Install the candidate and reload; on refusal, switch back on disk. ``{"ok", "model", "error"}``."""
        with self._lock:
            why = self.writable_reason()
            cand = self.candidate_dir
            if why is None and (cand is None or not cand.is_dir()):
                why = "there is no candidate: label collected frames, then retrain"
            if why is None and cand is not None:
                problem = bundles.complete(cand)
                if problem is not None:
                    why = f"the candidate {cand} is not a usable bundle: {problem}; retrain to write it again"
            if why is not None:
                return self._refuse(why)
            assert self.model_dir is not None and cand is not None
            before = self.running()
            try:
                version = bundles.install(self.model_dir, cand, copy=True)
            except (OSError, bundles.IncompleteBundle) as exc:
                return self._refuse(f"could not install the candidate into {self.model_dir}: {exc}")
            outcome = self.reload(RELOAD_TIMEOUT_S)
            if outcome.get("ok"):
                self.last_error = None
                log.info("models: deployed %s as %s (was %s)", version.id, outcome.get("model"), before)
                return {"ok": True, "model": outcome.get("model"), "version": version.id, "was": before}
            bundles.rollback(self.model_dir, discard=True)
            return self._refuse(f"the app refused the candidate: {outcome.get('error') or 'no answer'}; "
                                f"{before} runs on and the bundle on disk was switched back")

    def rollback(self) -> dict[str, Any]:
        """Switch ``--model DIR`` back to the bundle it replaced and reload; undone on disk if the app refuses it."""
        with self._lock:
            why = self.writable_reason()
            if why is not None:
                return self._refuse(why)
            assert self.model_dir is not None
            before = self.running()
            try:
                version = bundles.rollback(self.model_dir)
            except OSError as exc:
                return self._refuse(f"could not switch {self.model_dir} back: {exc}")
            if version is None:
                return self._refuse("there is no previous bundle to roll back to")
            outcome = self.reload(RELOAD_TIMEOUT_S)
            if outcome.get("ok"):
                self.last_error = None
                log.info("models: rolled back to %s as %s (was %s)", version.id, outcome.get("model"), before)
                return {"ok": True, "model": outcome.get("model"), "version": version.id, "was": before}
            bundles.rollback(self.model_dir)  # undo: the bundle that was running is the previous one now
            return self._refuse(f"the app refused the previous bundle: {outcome.get('error') or 'no answer'}; {before} runs on")

    def start_retrain(self) -> dict[str, Any]:
        """Start ``retrain-model`` in the background (one at a time); its progress is ``overview()["retrain"]["job"]``."""
        with self._lock:
            if self.collect is None:
                return self._refuse("retraining needs --collect DIR: the labelled frames it trains on")
            if not self.retrain_available():
                return self._refuse(f"TensorFlow is not installed here: run {shlex.join(self.retrain_command())} on a workstation "
                                    "and copy the candidate back, or install the [workstation,pretrained] extras")
            if self.job is not None and self.job.state() == "running":
                return self._refuse("a retrain is already running")
            labelled = self.labelled_classes()
            if len(labelled) < 2:
                return self._refuse(f"retraining needs labelled images of at least 2 classes in {self.collect / 'train'} (found "
                                    f"{', '.join(f'{c}: {n}' for c, n in labelled.items()) or 'none'}): label collected frames on the review page first")
            command = [sys.executable, "-m", "converter.cli.retrain", *self.retrain_command()[1:]]
            log_path = self.collect / ".retrain.log"
            job = RetrainJob(command, log_path)
            try:
                job.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                               env=os.environ | {"PYTHONUNBUFFERED": "1"})
            except OSError as exc:
                return self._refuse(f"could not start retrain-model: {exc}")
            self.job = job
            threading.Thread(target=self._follow, args=(job,), name="retrain-job", daemon=True).start()
            log.info("models: retraining: %s", shlex.join(command))
            return {"ok": True, "job": job.to_json()}

    def wait_retrain(self, timeout: float) -> RetrainJob | None:
        """Wait for the background job to end (tests, shutdown); the job."""
        deadline = time.monotonic() + timeout
        while self.job is not None and self.job.state() == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.job

    def close(self) -> None:
        """Stop a running retrain (the app is stopping)."""
        job = self.job
        if job is not None and job.process is not None and job.returncode is None:
            job.process.terminate()

    def _follow(self, job: RetrainJob) -> None:
        assert job.process is not None and job.process.stdout is not None
        with job.process.stdout, job.log_path.open("w") as out:
            for line in job.process.stdout:
                job.lines.append(line.rstrip("\n"))
                out.write(line)
                out.flush()
        job.returncode = job.process.wait()
        log.log(logging.INFO if job.returncode == 0 else logging.WARNING, "models: retrain-model ended with exit code %d", job.returncode)

    def _refuse(self, why: str) -> dict[str, Any]:
        self.last_error = why
        log.warning("models: %s", why)
        return {"ok": False, "error": why}
