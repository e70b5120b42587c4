"""``edge-app --check-config``: what a run checks before its first frame, without starting capture or serving.

Each check raises the same domain error, with the same one-line message and exit code, as the run meets when
it opens the same thing: the model and labels are loaded (with the delegate; a ``--model DIR`` left incomplete is
checked as the bundle the run would fall back to, ``bundles.fallback``), video files and image folders are
opened and their first frame read (zones must fit it), the web view's address is bound and released, and log
files are opened for appending (a file that does not exist yet is not created: its folder is tried with a
temporary file, removed at once). Cameras and streams are not opened: a running service may hold them.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app import bundles
from edge_app.config import parse_hostport
from edge_app.delegates import load_classifier
from edge_app.errors import OutputError
from edge_app.model import resolve_model, shipped_models, threshold_in_force
from edge_app.outputs.logsink import log_format_for, reason
from edge_app.sources.base import SourceSpec
from edge_app.zones import Zone, check_zones, parse_zones

if TYPE_CHECKING:
    from edge_app.config import AppConfig
    from edge_app.delegates import DelegateLoader

log = logging.getLogger(__name__)


def check_model(config: AppConfig, loader: DelegateLoader | None = None) -> str:
    """Load the model, labels and manifest as the run does (``App._open_model``); a line describing what loaded."""
    c = config.model
    model, note = c.path, ""
    if model is not None and c.seed is not None and bundles.seedable(model, shipped_models()):  # the run copies the shipped bundle
        note = f"; {model} does not exist yet: the run makes it a copy of the shipped {c.seed} bundle"
        model = Path(c.seed)
    found = bundles.fallback(c.path) if c.path is not None and not note else None
    if found is not None:  # the run switches to the previous complete bundle (bundles.recover): check that one
        reason, model = found
        note = f"; {c.path} is not usable ({reason}): the run falls back to {model}"
    files = resolve_model(model, c.labels)
    classifier, acceleration = load_classifier(files, c.delegate, c.device, c.threads, loader)
    h, w = classifier.size
    threshold = threshold_in_force(config.classification.threshold, classifier.threshold)  # the run's rule (ZoneClassifier.threshold_for)
    return (f"model = {files.model} ({h}x{w}x{classifier.channels} input, {len(classifier.labels)} classes, {acceleration.name}{note}), "
            f"threshold {threshold.describe()}")


def check_source(key: str, spec: SourceSpec, zones: list[Zone]) -> str:
    """Open a video file or image folder and read its first frame (zones must fit it); cameras and streams are described only."""
    live = spec.kind == "picamera2" or spec.is_stream or isinstance(spec.target, int)
    if live:
        return f"{key} = {spec.describe()} (not opened by --check-config: the run opens it)"
    from edge_app.sources.registry import open_source  # noqa: PLC0415 - imports OpenCV, which the CLI checked first

    source = open_source(spec)
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        return f"{key} = {spec.describe()} (opened; no frame could be read)"
    height, width = frame.shape[:2]
    if zones:
        check_zones(zones, height, width, spec.describe())
    return f"{key} = {spec.describe()} ({width}x{height} frames)"


def check_bind(address: str) -> str:
    """Bind the web view's address as the run does (``edge_app.web.server.bind``) and release it; its ``OutputError``."""
    from edge_app.web.server import bind  # noqa: PLC0415 - the web application only when --http is set

    host, port = parse_hostport(address)
    bind(host, port, "the web view").close()
    return f"http = {host}:{port} (free)"


def check_log(path: Path, fmt: str | None) -> str:
    """The log's format from its name, and that the file can be opened for appending, as ``RotatingLineLog`` opens it."""
    chosen = log_format_for(path, fmt)
    try:
        _check_appendable(path)
    except OSError as exc:
        raise OutputError(f"cannot open log file {path}: {reason(exc)}; choose a writable location or fix the folder's permissions") from exc
    return f"log = {path} ({chosen}, writable)"


def _check_appendable(path: Path) -> None:
    """Open ``path`` for appending if it exists; else create and remove a temporary file where it would be created."""
    if path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.close(fd)
        return
    folder = path.parent
    while not folder.exists():  # the run creates the missing folders: the first existing one must take them
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():  # the run's mkdir(parents=True, exist_ok=True) fails so on a file in the way
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
    if folder != path.parent:  # a folder the run would create: try creating one
        probe = Path(tempfile.mkdtemp(dir=folder, prefix=".edge-app-check-"))
        probe.rmdir()
        return
    fd, name = tempfile.mkstemp(dir=folder, prefix=".edge-app-check-")
    os.close(fd)
    os.unlink(name)


def check_run(config: AppConfig, loader: DelegateLoader | None = None) -> list[str]:
    """Every check, in the run's order (model, sources, outputs); the report's lines. Raises the run's errors."""
    lines = [check_model(config, loader)]
    zones = parse_zones(config.classification.zones)
    specs = config.source_specs()
    for name, spec in specs:
        lines.append(check_source(f"source {name}" if len(specs) > 1 else "source", spec, zones))
    if config.http.listen is not None:
        lines.append(check_bind(config.http.listen))
    if config.log.path is not None:
        from edge_app.app import per_source_path  # noqa: PLC0415 - the run's own naming of each source's file

        for name, _ in specs:
            path = per_source_path(config.log.path, name) if len(specs) > 1 else config.log.path
            lines.append(check_log(path, config.log.format))
    return lines
