"""Atomic switches between model bundles in a ``--model DIR`` folder: install, roll back, recover at start.

Layout (siblings of ``DIR``, so that every rename stays on one file system)::

    DIR           -> .DIR.versions/000007-3f2a9c1d0b4e    symlink: the bundle the app opens
    DIR.previous  -> .DIR.versions/000006-91c0aa27d5f3    symlink: the bundle a rollback returns to
    .DIR.versions/000006-91c0aa27d5f3/   manifest.json  model.tflite  labels.txt
    .DIR.versions/000007-3f2a9c1d0b4e/   ...

A version folder (``<sequence>-<first 12 hex digits of the model's sha256>``) is written whole and fsynced before
anything points at it, and never changed afterwards. Every switch is one ``rename(2)``: a new symlink is made under
a temporary name and ``os.replace``-d over ``DIR`` (or ``DIR.previous``). A reader, or a restart after a SIGKILL or a
power cut at any instant, finds the old bundle or the new one, never a mix. ``install`` points ``DIR.previous`` at
the current version, then flips ``DIR`` to the new one, then deletes every version but those two; ``rollback`` flips
``DIR`` back to ``DIR.previous``'s version.

Migration: a real ``DIR`` folder (before the first install) is renamed into ``.DIR.versions/`` and a symlink put in
its place; so is a ``DIR.previous/`` copy left by earlier edge-app versions. A kill between the rename and the
symlink leaves ``DIR`` missing while versions exist, which ``recover`` repairs.

``recover(dest)`` runs at start: when the bundle at ``DIR`` is incomplete or inconsistent (``complete`` says why:
a missing or unreadable manifest, model or labels, a model whose sha256 or size is not the manifest's), or ``DIR``
is missing while versions exist, it switches ``DIR`` to the newest complete other bundle (``DIR.previous`` first)
and logs one warning. It writes nothing when ``DIR`` is fine or nothing complete is left, nor for a path that is
no bundle folder of this layout (a ``.tflite`` file, the read-only bundles shipped in the package).

One process writes a ``DIR`` at a time (the edge-app that runs it); within it the functions share one lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_VERSION = re.compile(r"^(\d{6,})(?:-[0-9a-f]{12})?$")
_LOCK = threading.RLock()


class IncompleteBundle(ValueError):
    """A folder given to ``install`` that is not a complete bundle (the message says why)."""


@dataclass(frozen=True)
class Version:
    """One installed bundle: its folder in ``.DIR.versions/`` and the model's sha256 its manifest records."""

    id: str
    path: Path
    sha256: str | None


def versions_dir(dest: Path) -> Path:
    """``.DIR.versions``, beside ``dest``: where the bundles ``dest`` and ``DIR.previous`` point at are kept."""
    return dest.parent / f".{dest.name}.versions"


def previous_link(dest: Path) -> Path:
    """``DIR.previous``: the symlink to the bundle a rollback returns to."""
    return dest.with_name(dest.name + ".previous")


# --------------------------------------------------------------------------- checks


def complete(bundle_dir: Path) -> str | None:
    """``None`` when ``bundle_dir`` holds a usable bundle, else why not (a short phrase for a log line).

    Checked: ``manifest.json`` is a readable JSON object with an ``input``; the model it names (``model.tflite``)
    is readable, not empty, and of the manifest's ``size_bytes`` and ``sha256`` when it gives them; the labels
    file it names is readable, non-empty text, with as many classes as the manifest lists when it lists them.
    Whether the model loads and fits its manifest is the app's check when it opens it.
    """
    if not bundle_dir.is_dir():
        return "the folder is missing"
    try:
        data = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} is unreadable ({_why(exc)})"
    if not isinstance(data, dict) or not isinstance(data.get("input"), dict):
        return f"{MANIFEST} is not a bundle manifest (no input)"
    model_name = data.get("model") or "model.tflite"
    if not _plain(model_name):
        return f"{MANIFEST} names the model {model_name!r}, not a file name"
    try:
        blob = (bundle_dir / model_name).read_bytes()
    except OSError as exc:
        return f"{model_name} is {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'} ({_why(exc)})"
    if not blob:
        return f"{model_name} is empty"
    sha = data.get("sha256")
    if isinstance(sha, str) and sha.lower() != hashlib.sha256(blob).hexdigest():
        return f"{model_name} does not match the manifest's sha256 {sha[:12]} (the files belong to different bundles)"
    size = data.get("size_bytes")
    if isinstance(size, int) and size != len(blob):
        return f"{model_name} is {len(blob)} bytes, the manifest says {size}"
    labels_name = data.get("labels")
    if labels_name:
        if not _plain(labels_name):
            return f"{MANIFEST} names the labels {labels_name!r}, not a file name"
        try:
            lines = [ln for ln in (bundle_dir / labels_name).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            return f"{labels_name} is {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'} ({_why(exc)})"
        classes = data.get("classes")
        if not lines:
            return f"{labels_name} is empty"
        if isinstance(classes, list) and classes and len(classes) != len(lines):
            return f"{labels_name} has {len(lines)} classes, the manifest lists {len(classes)}"
    return None


def current(dest: Path) -> Version | None:
    """The installed version ``dest`` points at; ``None`` when ``dest`` is no symlink into ``.DIR.versions/``."""
    return _version_at(dest, dest)


def previous(dest: Path) -> Version | None:
    """The version ``DIR.previous`` points at (a rollback's target), or ``None``."""
    return _version_at(previous_link(dest), dest)


# --------------------------------------------------------------------------- switches


def install(dest: Path, staged_dir: Path, *, copy: bool = False) -> Version:
    """Make the complete bundle in ``staged_dir`` the one at ``dest`` in one atomic switch; the old one becomes previous.

    ``staged_dir`` is moved into ``.DIR.versions/`` (copied there and left as it is with ``copy=True``, or when it is
    on another file system). Raises ``IncompleteBundle`` (nothing changed) when it is not complete, ``OSError``
    when the disk refuses; a failure at any step leaves ``dest`` at the old bundle or the new one.
    """
    reason = complete(staged_dir)
    if reason is not None:
        raise IncompleteBundle(f"{staged_dir} is not a complete bundle: {reason}")
    with _LOCK:
        _clean_strays(dest)
        _migrate(dest)
        new = _store(staged_dir, versions_dir(dest), copy=copy)
        old = current(dest)
        if old is not None and complete(old.path) is None:
            _point(previous_link(dest), old.path)
        _point(dest, new.path)
        _prune(dest)
    log.debug("bundles: %s -> %s (previous %s)", dest, new.id, old.id if old else None)
    return new


def rollback(dest: Path, *, discard: bool = False) -> Version | None:
    """Point ``dest`` back at the previous version in one atomic switch; that version, or ``None`` when there is no
    complete previous one (nothing changed).

    The version rolled back from becomes the previous one (a second rollback undoes the first), or, with
    ``discard=True`` (a bundle the app refused), is deleted.
    """
    with _LOCK:
        _clean_strays(dest)
        _migrate(dest)
        back = previous(dest)
        if back is None or complete(back.path) is not None:
            return None
        was = current(dest)
        _point(dest, back.path)
        if was is not None and not discard:
            _point(previous_link(dest), was.path)
        else:
            previous_link(dest).unlink(missing_ok=True)
            _fsync_dir(dest.parent)
        _prune(dest)
    return back


def seedable(dest: Path, names: Collection[str] = ()) -> bool:
    """Whether ``seed`` would make ``dest``: a folder path (not a ``.tflite``) that does not exist, with nothing of this
    layout beside it, in an existing writable folder. A bare name among ``names`` (the shipped bundles'
    names) means that bundle, not a folder to make; any other bare name is a folder in the working directory."""
    if dest.exists() or dest.is_symlink() or dest.suffix == ".tflite" or not dest.parts:
        return False
    if len(dest.parts) == 1 and str(dest) in names:
        return False
    if versions_dir(dest).exists() or previous_link(dest).exists():
        return False
    return dest.parent.is_dir() and os.access(dest.parent, os.W_OK | os.X_OK)


def seed(dest: Path, source: Path) -> Version:
    """Make the missing bundle folder ``dest`` (``seedable``) a copy of the complete bundle ``source``, in this layout:
    a device's own model folder starts as the shipped bundle, ready for Deploy, Rollback and ``--model-url``."""
    return install(dest, source, copy=True)


def fallback(dest: Path) -> tuple[str, Path] | None:
    """Read-only: ``(what is wrong with dest, the complete bundle recover would switch to)``, or None when ``dest`` is
    fine, is no bundle folder of this layout, or no complete bundle is left (``--check-config`` reports it so)."""
    versions, prev = versions_dir(dest), previous_link(dest)
    if not (dest.is_dir() or dest.is_symlink() or versions.is_dir() or prev.is_dir()):
        return None  # a .tflite file, or nothing at all: not a bundle folder
    reason = complete(dest) if dest.exists() else "it is missing (a switch was interrupted)"
    if reason is None:
        return None
    here = dest.resolve() if dest.exists() else None
    for candidate in _fallbacks(dest, missing=here is None):
        if candidate.resolve() != here and complete(candidate) is None:
            return reason, candidate
    return None


def recover(dest: Path) -> Path:
    """At start: the bundle folder to open for ``--model dest`` (``dest`` itself unless a switch was impossible).

    When ``dest`` is incomplete or inconsistent (``complete``), or missing while versions exist, switches it to the
    newest complete other bundle (``DIR.previous`` first) with one warning saying what was wrong and which bundle
    is used. Nothing is written when ``dest`` is fine, when no complete bundle is left (opening ``dest`` then fails
    with its own error), or when ``dest`` is no folder of this layout.
    """
    with _LOCK:
        found = fallback(dest)
        if found is None:
            return dest
        reason, candidate = found
        try:
            used = _switch_to(dest, candidate)
        except OSError as exc:  # a read-only disk: run the complete bundle where it is
            log.warning("model bundle %s is not usable: %s; using the complete bundle %s in place (could not switch %s to it: %s)",
                        dest, reason, _shown(candidate, dest), dest.name, _why(exc))
            return candidate
        log.warning("model bundle %s is not usable: %s; switched it to the complete bundle %s", dest, reason, _shown(used, dest))
        return dest


# --------------------------------------------------------------------------- internals


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _plain(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def _shown(folder: Path, dest: Path) -> str:
    if folder.parent == versions_dir(dest):
        return f"{folder.parent.name}/{folder.name}"
    return str(folder)


def _seq(name: str) -> int | None:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else None


def _versions(dest: Path) -> list[Path]:
    """The version folders, newest (highest sequence) first."""
    try:
        entries = [p for p in versions_dir(dest).iterdir() if _seq(p.name) is not None and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(entries, key=lambda p: _seq(p.name) or 0, reverse=True)


def _manifest_sha(folder: Path) -> str | None:
    try:
        sha = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return sha.lower() if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None


def _version_at(link: Path, dest: Path) -> Version | None:
    """The version folder ``link`` (a symlink) points at, when it is one of ``dest``'s ``.DIR.versions/``."""
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    versions = versions_dir(dest)
    if target.parent.resolve() != versions.resolve() or _seq(target.name) is None or not target.is_dir():
        return None
    folder = versions / target.name
    return Version(folder.name, folder, _manifest_sha(folder))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a (relative) symlink to ``target`` in one rename: a new link under a temporary name, replaced over."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.symlink(os.path.relpath(target, link.parent), tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(link.parent)


def _new_name(versions: Path, sha: str | None) -> str:
    seqs = [s for s in (_seq(p.name) for p in versions.iterdir()) if s is not None]
    return f"{max(seqs, default=0) + 1:06d}" + (f"-{sha[:12]}" if sha else "")


def _adopt(folder: Path, versions: Path) -> Path:
    """Move ``folder`` (same file system) into ``versions`` as the newest version; its new path."""
    target = versions / _new_name(versions, _manifest_sha(folder))
    os.rename(folder, target)
    _fsync_dir(versions)
    _fsync_dir(folder.parent)
    return target


def _store(staged: Path, versions: Path, *, copy: bool) -> Version:
    """Put ``staged`` into ``versions`` as the newest version: renamed, or copied into a ``.partial-`` folder first."""
    sha = _manifest_sha(staged)
    target = versions / _new_name(versions, sha)
    if not copy:
        _fsync_tree(staged)
        try:
            os.rename(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy = True
        else:
            _fsync_dir(versions)
            return Version(target.name, target, sha)
    partial = versions / f".partial-{secrets.token_hex(4)}"
    try:
        shutil.copytree(staged, partial, symlinks=False)
        _fsync_tree(partial)
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _fsync_dir(versions)
    return Version(target.name, target, sha)


def _migrate(dest: Path) -> None:
    """Bring ``dest`` into the layout: afterwards it is missing or a symlink into ``.DIR.versions/``."""
    versions, prev = versions_dir(dest), previous_link(dest)
    versions.mkdir(exist_ok=True)
    if prev.is_dir() and not prev.is_symlink():  # an earlier edge-app's copy of the old files: older than DIR, so first
        if complete(prev) is None:
            _point(prev, _adopt(prev, versions))
        else:
            shutil.rmtree(prev)
    if dest.is_symlink() and current(dest) is None:  # a link made by hand to a folder elsewhere: copied, that folder left alone
        if dest.is_dir():
            _point(dest, _store(dest.resolve(), versions, copy=True).path)
    elif dest.is_dir() and not dest.is_symlink():
        _point(dest, _adopt(dest, versions))  # a kill between the two renames: recover() finds DIR missing


def _clean_strays(dest: Path) -> None:
    """Temporary symlinks and half-copied folders a killed switch left behind."""
    for pattern in (f".{dest.name}.tmp-*", f".{dest.name}.previous.tmp-*"):
        for p in dest.parent.glob(pattern):
            if p.is_symlink():
                p.unlink(missing_ok=True)
    versions = versions_dir(dest)
    if versions.is_dir():
        for p in versions.glob(".partial-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in versions.glob(".trash-*"):
            shutil.rmtree(p, ignore_errors=True)


def _prune(dest: Path) -> None:
    """Delete every version but the current and the previous one; a dangling ``DIR.previous`` goes too."""
    keep = {v.path.name for v in (current(dest), previous(dest)) if v is not None}
    prev = previous_link(dest)
    if prev.is_symlink() and previous(dest) is None:
        prev.unlink(missing_ok=True)
    for folder in _versions(dest):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    _clean_strays(dest)


def _fallbacks(dest: Path, *, missing: bool) -> list[Path]:
    """Bundles to fall back to, best first: with ``dest`` missing (a migration killed half-way) the newest version,
    else ``DIR.previous`` (a symlink or an earlier edge-app's copy), then the other versions, newest first."""
    prev = previous_link(dest)
    stored = _versions(dest)
    before = [prev] if prev.is_dir() else []
    ordered = stored + before if missing else before + stored
    seen: set[Path] = set()
    out = []
    for p in ordered:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _switch_to(dest: Path, candidate: Path) -> Path:
    """Make ``candidate`` (complete) the bundle at ``dest``; its folder in ``.DIR.versions/``. ``DIR.previous`` is
    dropped when it pointed at it, and the incomplete bundle ``dest`` was is deleted."""
    versions, prev = versions_dir(dest), previous_link(dest)
    versions.mkdir(exist_ok=True)
    _clean_strays(dest)
    if candidate == prev and not prev.is_symlink():  # an earlier edge-app's DIR.previous/ copy
        candidate = _adopt(prev, versions)
    elif candidate == prev:
        linked = previous(dest)
        candidate = linked.path if linked is not None else _store(prev.resolve(), versions, copy=True).path
    broken = current(dest)  # None for a real folder, a dangling link or a link made by hand (its target is left alone)
    if dest.is_dir() and not dest.is_symlink():  # a real folder with a half-replaced bundle: moved aside, then deleted
        os.rename(dest, versions / f".trash-{secrets.token_hex(4)}")
    _point(dest, candidate)
    if prev.is_symlink() and (previous(dest) is None or previous(dest) == current(dest)):
        prev.unlink(missing_ok=True)
        _fsync_dir(dest.parent)
    if broken is not None and broken.path.resolve() != candidate.resolve():
        shutil.rmtree(broken.path, ignore_errors=True)
    _prune(dest)
    return candidate
