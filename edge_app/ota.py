"""``--model-url URL``: keep the local model bundle in step with one published over HTTP(S).

A ``BundlePoller`` thread fetches ``URL/manifest.json`` every ``poll_s`` seconds. When its ``sha256`` (of
``model.tflite``, written by ``convert-model``) differs from the bundle in ``--model DIR``, it downloads the
files the manifest names into a staging folder beside ``DIR`` (``DIR.incoming/``), checks the model's sha256 and
size against the manifest, installs them with one atomic switch (``edge_app.bundles``: ``DIR`` is a symlink into
``.DIR.versions/``, flipped by one rename; the old bundle stays as ``DIR.previous``) and asks the running app to
reload between frames. A kill or a power cut at any moment leaves ``DIR`` at the old bundle or the new one, never
a mix, and the next start checks it (``bundles.recover``). A download that does not match is discarded; a bundle
the app refuses (it fails to load or to classify the newest frame) is rolled back on disk as well (one switch
back to ``DIR.previous``, the refused bundle deleted), so a restart runs the good model too. Each outcome is one
log line; a bundle once refused is not fetched again until the published sha256 changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_app import bundles
from edge_app.config.values import check_bundle_url as check_url

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 200_000_000
FETCH_TIMEOUT_S = 30.0


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class BundleError(Exception):
    """A published bundle that cannot be used (unreachable, malformed, or not matching its manifest)."""


def _get(url: str, limit: int = MAX_BUNDLE_BYTES) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - the scheme is checked up front
            data = resp.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BundleError(f"cannot fetch {url}: {reason}") from None
    if len(data) > limit:
        raise BundleError(f"{url} is larger than {limit} bytes")
    return data


class BundlePoller:
    """Polls ``url`` for a newer bundle and installs it into ``dest`` (see the module doc)."""

    def __init__(self, url: str, dest: Path, *, poll_s: float, reload: Callable[[float], dict[str, Any]], stop: threading.Event) -> None:
        check_url(url)
        self.url = url if url.endswith("/") else url + "/"
        self.dest = dest
        self.poll_s = poll_s
        self.reload = reload
        self.stop = stop
        self.refused: str | None = None  # the published sha256 the app refused: not fetched again
        self.installed = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-url", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self.stop.wait(self.poll_s):
            try:
                self.check_once()
            except BundleError as exc:
                log.warning("model-url: %s; keeping %s", exc, self.dest)
            except Exception:
                log.exception("model-url: unexpected failure; polling on")

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(_get(self.url + "manifest.json", 1_000_000))
        except ValueError:
            raise BundleError(f"{self.url}manifest.json is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or len(data["sha256"]) != 64:
            raise BundleError(f"{self.url}manifest.json has no sha256 of its model; rebuild the bundle with this version's convert-model")
        return data

    def check_once(self) -> bool:
        """One poll: True when a new bundle was installed and the app took it."""
        manifest = self.manifest()
        want = manifest["sha256"]
        if want == file_sha256(self.dest / str(manifest.get("model", "model.tflite"))) or want == self.refused:
            return False
        staged = self._download(manifest)
        try:
            self._install(staged)
        except bundles.IncompleteBundle as exc:  # this sha256 stays incomplete: not fetched again
            self.refused = want
            raise BundleError(f"the bundle from {self.url} is incomplete ({exc}), not installed") from None
        outcome = self.reload(60.0)
        if outcome.get("ok"):
            self.installed += 1
            log.info("model-url: installed %s from %s (sha256 %s)", outcome.get("model"), self.url, want[:12])
            return True
        self.refused = want
        restored = self._roll_back()
        log.error("model-url: the app refused the bundle from %s (sha256 %s): %s; %s",
                  self.url, want[:12], outcome.get("error") or "no answer",
                  f"restored the previous files ({restored.id})" if restored else "no previous bundle to restore")
        return False

    def _download(self, manifest: dict[str, Any]) -> Path:
        staged = self.dest.with_name(self.dest.name + ".incoming")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        names = [str(manifest.get("model", "model.tflite"))] + ([str(manifest["labels"])] if manifest.get("labels") else [])
        for name in names:
            if "/" in name or "\\" in name or name.startswith("."):
                raise BundleError(f"the manifest names {name!r}: only plain file names are accepted")
            (staged / name).write_bytes(_get(self.url + urllib.parse.quote(name)))
        model = staged / names[0]
        got = file_sha256(model)
        if got != manifest["sha256"]:
            shutil.rmtree(staged, ignore_errors=True)
            raise BundleError(f"{self.url}{names[0]} has sha256 {str(got)[:12]}, the manifest says {manifest['sha256'][:12]}: a damaged or "
                              "half-published bundle, not installed")
        if manifest.get("size_bytes") not in (None, model.stat().st_size):
            shutil.rmtree(staged, ignore_errors=True)
            raise BundleError(f"{self.url}{names[0]} is {model.stat().st_size} bytes, the manifest says {manifest['size_bytes']}")
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return staged

    def _install(self, staged: Path) -> bundles.Version:
        """The staged bundle becomes the one at ``dest`` in one atomic switch (the staging folder is moved, not copied)."""
        try:
            return bundles.install(self.dest, staged)
        except OSError as exc:
            raise BundleError(f"cannot install the bundle from {self.url} into {self.dest}: {exc}") from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # gone already once installed (moved)

    def _roll_back(self) -> bundles.Version | None:
        """Switch ``dest`` back to the previous bundle and delete the refused one; the bundle restored, or None."""
        try:
            return bundles.rollback(self.dest, discard=True)
        except OSError as exc:
            log.error("model-url: cannot restore the previous bundle in %s: %s", self.dest, exc)
            return None
