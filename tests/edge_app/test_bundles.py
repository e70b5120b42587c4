"""Atomic bundle switches (``edge_app.bundles``): install, rollback, recovery at start; and the drill of issue 33,
a real ``edge-app --model-url`` update killed with SIGKILL between two renames, then restarted on a real video."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_app import bundles
from edge_app.model import default_model_dir
from tests.edge_app.helpers import edge_app, env, wait_until

CIFAR = default_model_dir("cifar10")
CATS = default_model_dir("cats-vs-dogs")


def bundle_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def same_bundle(folder: Path, src: Path) -> bool:
    """``folder`` holds exactly the files of the shipped bundle ``src`` (never a mix of two)."""
    return sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in src.iterdir()) and all(
        (folder / p.name).read_bytes() == p.read_bytes() for p in src.iterdir()
    )


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) + ("@" if p.is_symlink() else "") for p in folder.rglob("*"))


def bundle_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge_app.bundles" and r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------------ complete


def test_complete_accepts_the_shipped_bundles_and_names_what_is_wrong(tmp_path) -> None:
    assert bundles.complete(CIFAR) is None and bundles.complete(CATS) is None
    cases: dict[str, tuple[Callable[[Path], object], str]] = {
        "no-manifest": (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        "bad-json": (lambda d: (d / "manifest.json").write_text("{"), "manifest.json is unreadable"),
        "no-model": (lambda d: (d / "model.tflite").unlink(), "model.tflite is missing"),
        "other-manifest": (lambda d: shutil.copy2(CATS / "manifest.json", d / "manifest.json"), "does not match the manifest's sha256"),
        "no-labels": (lambda d: (d / "labels.txt").unlink(), "labels.txt is missing"),
        "other-labels": (lambda d: shutil.copy2(CATS / "labels.txt", d / "labels.txt"), "labels.txt has 2 classes, the manifest lists 10"),
    }
    for name, (damage, reason) in cases.items():
        folder = bundle_copy(CIFAR, tmp_path / name)
        damage(folder)
        assert reason in (bundles.complete(folder) or ""), name
    truncated = bundle_copy(CIFAR, tmp_path / "truncated")
    manifest = json.loads((truncated / "manifest.json").read_text())
    manifest.pop("sha256")  # the size alone still catches a short copy
    (truncated / "manifest.json").write_text(json.dumps(manifest))
    (truncated / "model.tflite").write_bytes((CIFAR / "model.tflite").read_bytes()[:1000])
    assert bundles.complete(truncated) == f"model.tflite is 1000 bytes, the manifest says {manifest['size_bytes']}"
    assert bundles.complete(tmp_path / "nowhere") == "the folder is missing"


# ------------------------------------------------------------------------------------------ install / rollback


def test_install_migrates_a_real_folder_then_switches_by_symlink_keeping_two_versions(tmp_path) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    v2 = bundles.install(live, bundle_copy(CATS, tmp_path / "live.incoming"))
    assert not (tmp_path / "live.incoming").exists()  # moved, not copied
    assert live.is_symlink() and os.readlink(live) == f".live.versions/{v2.id}" and same_bundle(live, CATS)
    assert v2.sha256 == json.loads((CATS / "manifest.json").read_text())["sha256"] and v2.id.endswith("-" + v2.sha256[:12])
    assert bundles.current(live) == v2
    prev = bundles.previous(live)
    assert prev is not None and same_bundle(prev.path, CIFAR) and (tmp_path / "live.previous").is_symlink()
    v3 = bundles.install(live, bundle_copy(CIFAR, tmp_path / "again"))
    assert same_bundle(live, CIFAR) and bundles.previous(live) == v2
    assert sorted(p.name for p in (tmp_path / ".live.versions").iterdir()) == sorted([v2.id, v3.id])  # the oldest is deleted
    # copy=True leaves the source alone
    source = bundle_copy(CATS, tmp_path / "candidate")
    bundles.install(live, source, copy=True)
    assert same_bundle(source, CATS) and same_bundle(live, CATS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".live.versions", "candidate", "live", "live.previous"]


def test_install_refuses_an_incomplete_bundle_and_changes_nothing(tmp_path) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    staged = bundle_copy(CATS, tmp_path / "staged")
    (staged / "model.tflite").write_bytes((CIFAR / "model.tflite").read_bytes())
    before = listing(tmp_path)
    with pytest.raises(bundles.IncompleteBundle, match="does not match the manifest's sha256"):
        bundles.install(live, staged)
    assert listing(tmp_path) == before


def test_install_adopts_an_earlier_versions_previous_copy_and_clears_stray_links(tmp_path) -> None:
    live = bundle_copy(CATS, tmp_path / "live")
    bundle_copy(CIFAR, tmp_path / "live.previous")  # what edge-app before issue 33 kept: a real copy
    (tmp_path / ".live.tmp-123-abcd").symlink_to("nowhere")  # left by a switch killed before its rename
    bundles.install(live, bundle_copy(CIFAR, tmp_path / "staged"))
    prev = bundles.previous(live)
    assert prev is not None and same_bundle(prev.path, CATS) and same_bundle(live, CIFAR)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".live.versions", "live", "live.previous"]
    assert len(list((tmp_path / ".live.versions").iterdir())) == 2


def test_rollback_flips_back_and_a_second_one_undoes_it_or_discards(tmp_path) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    assert bundles.rollback(live) is None  # nothing installed yet: nothing to go back to
    new = bundles.install(live, bundle_copy(CATS, tmp_path / "staged"))
    back = bundles.rollback(live)
    assert back is not None and same_bundle(live, CIFAR) and bundles.previous(live) == new
    assert bundles.rollback(live) == new and same_bundle(live, CATS)
    back = bundles.rollback(live, discard=True)  # a refused bundle: deleted
    assert back is not None and same_bundle(live, CIFAR) and bundles.previous(live) is None
    assert not new.path.exists() and not (tmp_path / "live.previous").exists()
    assert [p.name for p in (tmp_path / ".live.versions").iterdir()] == [back.id]
    assert bundles.rollback(live) is None


# ------------------------------------------------------------------------------------------ recover


def test_recover_a_folder_where_only_the_manifest_was_replaced(tmp_path, caplog) -> None:
    """The state issue 33 reports: edge-app before the fix killed after renaming the new manifest.json into DIR."""
    live = bundle_copy(CIFAR, tmp_path / "live")
    shutil.copy2(CATS / "manifest.json", live / "manifest.json")
    bundle_copy(CIFAR, tmp_path / "live.previous")
    with caplog.at_level(logging.INFO):
        assert bundles.recover(live) == live
    assert same_bundle(live, CIFAR) and live.is_symlink() and bundles.previous(live) is None
    [warning] = bundle_warnings(caplog)
    assert f"model bundle {live} is not usable: model.tflite does not match the manifest's sha256 f5c3bfc8f8e6" in warning
    assert re.search(r"switched it to the complete bundle \.live\.versions/000001-841400719cce$", warning), warning
    assert sorted(p.name for p in tmp_path.iterdir()) == [".live.versions", "live"]
    assert len(list((tmp_path / ".live.versions").iterdir())) == 1  # the mixed folder is deleted


def test_recover_a_damaged_installed_version_falls_back_to_previous(tmp_path, caplog) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    new = bundles.install(live, bundle_copy(CATS, tmp_path / "staged"))
    (new.path / "labels.txt").unlink()
    with caplog.at_level(logging.INFO):
        assert bundles.recover(live) == live
    assert same_bundle(live, CIFAR) and not new.path.exists()
    assert len(bundle_warnings(caplog)) == 1 and "labels.txt is missing" in bundle_warnings(caplog)[0]


def test_recover_a_missing_folder_while_versions_exist(tmp_path, caplog) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    new = bundles.install(live, bundle_copy(CATS, tmp_path / "staged"))
    live.unlink()
    with caplog.at_level(logging.INFO):
        assert bundles.recover(live) == live
    assert bundles.current(live) == new and same_bundle(live, CATS)  # the newest complete one
    [warning] = bundle_warnings(caplog)
    assert "it is missing (a switch was interrupted)" in warning and new.id in warning


def test_recover_a_half_made_migration(tmp_path, caplog) -> None:
    """install() killed between its first renames: the old DIR.previous/ copy adopted (older), DIR renamed into the
    versions folder, and no symlink made yet. The newer one, DIR's, is the bundle to run."""
    versions = tmp_path / ".live.versions"
    versions.mkdir()
    bundle_copy(CATS, versions / "000001-f5c3bfc8f8e6")
    (tmp_path / "live.previous").symlink_to(".live.versions/000001-f5c3bfc8f8e6")
    bundle_copy(CIFAR, versions / "000002-841400719cce")
    live = tmp_path / "live"
    with caplog.at_level(logging.INFO):
        assert bundles.recover(live) == live
    assert same_bundle(live, CIFAR) and bundles.previous(live) is not None and same_bundle(tmp_path / "live.previous", CATS)
    assert len(bundle_warnings(caplog)) == 1


def test_recover_writes_nothing_when_fine_when_nothing_is_complete_or_for_a_file(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        shipped = CIFAR.parent
        before = listing(shipped)
        assert bundles.recover(CIFAR) == CIFAR and listing(shipped) == before  # the package's read-only bundles
        live = bundle_copy(CIFAR, tmp_path / "live")
        assert bundles.recover(live) == live
        (live / "model.tflite").unlink()  # broken, and nothing to fall back to: the app's own error follows
        before = listing(tmp_path)
        assert bundles.recover(live) == live and listing(tmp_path) == before
        assert bundles.recover(CIFAR / "model.tflite") == CIFAR / "model.tflite"
        assert bundles.recover(tmp_path / "absent") == tmp_path / "absent"
    assert bundle_warnings(caplog) == []


def test_recover_on_a_disk_that_refuses_the_switch_uses_the_previous_bundle_in_place(tmp_path, caplog, monkeypatch) -> None:
    live = bundle_copy(CIFAR, tmp_path / "live")
    bundles.install(live, bundle_copy(CATS, tmp_path / "staged"))
    (bundles.current(live).path / "manifest.json").write_text("{}")  # type: ignore[union-attr]

    def read_only(link: Path, target: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(bundles, "_point", read_only)
    with caplog.at_level(logging.INFO):
        used = bundles.recover(live)
    assert same_bundle(used, CIFAR) and used != live
    [warning] = bundle_warnings(caplog)
    assert "manifest.json is not a bundle manifest (no input)" in warning
    assert "in place (could not switch live to it: Read-only file system)" in warning


# ------------------------------------------------------------------------------------------ edge-app, for real

STRACE = shutil.which("strace")
RENAME = re.compile(r"\brename(?:at2?)?\(")
DELAY_US = 2_000_000  # each rename of the app returns only after this: time to see it and kill the app there


@pytest.fixture(scope="module")
def clip(tmp_path_factory, cifar10_val, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("bundles") / "clip.avi", cifar10_val.x[:40], repeat=2)


@pytest.fixture
def publish(tmp_path) -> Iterator[str]:
    """The cats-vs-dogs bundle (its manifest has the sha256 and size) served over HTTP on loopback: its URL."""
    published = bundle_copy(CATS, tmp_path / "published")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(published))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_on(model: Path, clip: Path) -> subprocess.CompletedProcess[str]:
    return edge_app("--model", str(model), "--source", str(clip), "--headless", "--max-frames", "10", timeout=60)


def warnings_in(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if " WARNING " in ln or ln.startswith("WARNING ")]


def test_an_update_killed_by_an_earlier_edge_app_starts_on_the_previous_bundle(tmp_path, clip) -> None:
    """Issue 33's report as it was: the new manifest beside the old model and labels, the complete copy in DIR.previous/.
    Before the fix the start refused (exit 4: manifest says input 224x224x3 but the model takes 32x32x3)."""
    live = bundle_copy(CIFAR, tmp_path / "live")
    shutil.copy2(CATS / "manifest.json", live / "manifest.json")
    bundle_copy(CIFAR, tmp_path / "live.previous")
    # systemd's ExecStartPre runs --check-config first: it must pass on what the run will use, and change nothing
    checked = edge_app("--model", str(live), "--source", str(clip), "--headless", "--check-config", timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is not usable" in checked.stdout and "the run falls back to" in checked.stdout and "10 classes" in checked.stdout
    assert not live.is_symlink() and not (tmp_path / ".live.versions").exists()
    result = run_on(live, clip)
    assert result.returncode == 0, result.stderr
    [warning] = warnings_in(result.stderr)
    assert "model bundle" in warning and "does not match the manifest's sha256" in warning and ".live.versions/000001-" in warning
    assert same_bundle(live, CIFAR) and "stopped (" in result.stderr


@pytest.mark.timeout(180)
@pytest.mark.skipif(STRACE is None, reason="strace is not installed (tests/setup.sh installs it)")
@pytest.mark.parametrize("kill_after", [1, 2, 3, 4, 5])
def test_a_model_url_update_killed_after_any_rename_restarts_on_a_complete_bundle(tmp_path, clip, publish, kill_after) -> None:
    """``edge-app --model-url`` under strace, which holds every rename(2) the app makes for ``DELAY_US`` after it
    happened; SIGKILL during the ``kill_after``-th one, then a plain restart on a real video: it runs the old bundle or
    the new one, never a mix, and says so in one warning line exactly when it had to fall back."""
    assert STRACE is not None
    live = bundle_copy(CIFAR, tmp_path / "live")
    trace = tmp_path / "renames.strace"
    cmd = [STRACE, "-f", "-qq", "--seccomp-bpf", "-e", "signal=none", "-e", "trace=rename,renameat,renameat2",
           "-e", f"inject=rename,renameat,renameat2:delay_exit={DELAY_US}", "-o", str(trace),
           sys.executable, "-m", "edge_app", "--model", str(live), "--model-url", publish, "--model-poll", "0.2",
           "--source", str(clip), "--loop", "--realtime", "--headless"]
    with (tmp_path / "updater.stderr").open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env(PYTHONDONTWRITEBYTECODE="1"))

    def renames() -> list[str]:
        text = trace.read_text() if trace.exists() else ""
        return [ln for ln in text.splitlines() if RENAME.search(ln) and "live" in ln]

    try:
        assert wait_until(lambda: len(renames()) >= kill_after or proc.poll() is not None, 90), "the update did not start"
        seen = renames()
        assert len(seen) >= kill_after, (seen, (tmp_path / "updater.stderr").read_text())
        os.kill(int(seen[kill_after - 1].split()[0]), signal.SIGKILL)  # the app's thread that renamed: the whole app dies
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(renames()) == kill_after, renames()  # killed mid-update: no rename after that one
    was_whole = bundles.complete(live) is None

    result = run_on(live, clip)
    assert result.returncode == 0, result.stderr
    assert same_bundle(live, CIFAR) or same_bundle(live, CATS), listing(tmp_path)
    warnings = warnings_in(result.stderr)
    assert len(warnings) == (0 if was_whole else 1), warnings
    if not was_whole:
        assert "model bundle" in warnings[0] and "switched it to the complete bundle" in warnings[0]
    if kill_after == 1:  # the first rename moved DIR into the versions folder: a real half-made switch
        assert "is not usable: it is missing (a switch was interrupted)" in warnings[0]
    assert same_bundle(live, CATS if kill_after == 5 else CIFAR)  # the fifth rename is the switch to the new bundle
