"""Fault drills, each injected for real into ``edge-app`` run as a user runs it (a subprocess on a real video):
a log folder deleted mid-run, SIGTERM while a stalled stream opens, corrupt frames in the middle of a file,
a source that cannot be opened, SIGHUP with a good and a broken model, a bad manifest, and quiet output."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.model import default_model_dir
from tests.edge_app.helpers import edge_app, env, one_error_line, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, cifar10_val, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("faults") / "clip.avi", cifar10_val.x[:60], repeat=5)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge_app", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def stop(proc: subprocess.Popen[str], timeout: float = 10) -> str:
    """SIGTERM, then stderr (asserting a clean exit 0)."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr
    return stderr


def lines_of(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def frames_in_stop_line(stderr: str) -> int:
    line = next(ln for ln in stderr.splitlines() if "stopped (" in ln)
    return int(line.split("): ")[1].split(" frames")[0])


def assert_source_kept_flowing(frames: list[int], stderr: str) -> None:
    """The source was never reopened: frame numbers start at 0 and only go up, and every gap is a frame the
    newest-frame-wins buffer replaced (``--realtime`` on a busy machine), counted as dropped in the stop line."""
    line = next(ln for ln in stderr.splitlines() if "stopped (" in ln)
    dropped = int(line.split("dropped ")[1].split(",")[0])
    assert frames[0] == 0 and all(b > a for a, b in itertools.pairwise(frames)), frames
    assert frames[-1] + 1 - len(frames) <= dropped, (line, frames)
    assert "reconnects 0" in line, line


# ------------------------------------------------------------------------------------------ the log file


def test_deleting_the_log_folder_mid_run_recreates_it_and_loses_no_record(tmp_path, clip) -> None:
    folder = tmp_path / "logs"
    log = folder / "results.jsonl"
    proc = start("--source", str(clip), "--loop", "--realtime", "--headless", "--log", str(log))
    try:
        assert wait_until(lambda: lines_of(log) > 20, 20), proc.stderr
        with log.open("rb") as old:  # keeps the deleted inode readable: what went into it is not lost to us
            shutil.rmtree(folder)
            assert wait_until(lambda: lines_of(log) > 20, 10), "the log was not recreated"
            stderr = stop(proc)
            before = [json.loads(line) for line in old.read().splitlines()]
    finally:
        if proc.poll() is None:
            proc.kill()
    after = [json.loads(line) for line in log.read_text().splitlines()]
    assert "deleted or moved away while in use; recreating it" in stderr
    frames = [r["frame"] for r in before + after]
    # every classified frame is in exactly one of the two files, in order, and the new file holds all records after the deletion
    assert len(frames) == frames_in_stop_line(stderr), (len(before), len(after))
    assert_source_kept_flowing(frames, stderr)
    assert len(after) > 20 and after[0]["frame"] == before[-1]["frame"] + 1


def test_a_source_that_cannot_be_opened_leaves_no_log_file(tmp_path) -> None:
    log = tmp_path / "out" / "results.csv"
    result = edge_app("--source", str(tmp_path / "missing.avi"), "--headless", "--log", str(log))
    assert result.returncode == 5 and "does not exist" in one_error_line(result)
    assert not log.exists() and not log.parent.exists()


# ------------------------------------------------------------------------------------------ the source


@contextlib.contextmanager
def stalled_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts connections and never sends a byte (a camera that hangs while connecting)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                conns.append(conn)
                accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        server.close()
        for c in conns:
            c.close()


def test_sigterm_while_a_stalled_stream_opens_exits_0_within_a_second(tmp_path) -> None:
    log = tmp_path / "results.jsonl"
    with stalled_server() as (port, accepted):
        proc = start("--source", f"http://127.0.0.1:{port}/stream.mjpg", "--open-timeout", "30", "--headless", "--log", str(log))
        try:
            assert accepted.wait(20), "edge-app never connected"
            time.sleep(0.5)  # well inside the open
            sent = time.monotonic()
            stderr = stop(proc, timeout=5)
            elapsed = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert elapsed < 1.0, f"SIGTERM took {elapsed:.2f} s while the stream was opening"
    assert "stopped while stream" in stderr and "Traceback" not in stderr
    assert not log.exists()


def corrupt_copy(video: Path, out: Path, seed: int = 0) -> Path:
    """``video`` with 4 KiB of random bytes written over it at 30 %, 38 % and 50 % of its length."""
    data = bytearray(video.read_bytes())
    rng = np.random.default_rng(seed)
    for frac in (0.3, 0.38, 0.5):
        at = int(len(data) * frac)
        data[at : at + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def readable_frames(video: Path) -> tuple[int, int]:
    """(frames a plain OpenCV loop reads before its first failed read, frames it reads when it keeps going)."""
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    first_stop, good, failed = None, 0, 0
    for _ in range(total + 20):
        ok, _frame = cap.read()
        if ok:
            good += 1
        else:
            failed += 1
            first_stop = good if first_stop is None else first_stop
    cap.release()
    return (first_stop if first_stop is not None else good), good


def test_corrupt_frames_in_the_middle_of_a_video_are_skipped_not_the_end(tmp_path, clip) -> None:
    bad = corrupt_copy(clip, tmp_path / "bad.avi")
    stops_at, readable = readable_frames(bad)
    assert stops_at < readable - 50, "the corruption did not make a read fail mid-file: the drill tests nothing"
    log = tmp_path / "bad.jsonl"
    result = edge_app("--source", str(bad), "--headless", "--log", str(log), extra_env={"OPENCV_FFMPEG_LOGLEVEL": "-8"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == readable, (len(records), readable, stops_at)
    assert "unreadable frame(s)" in result.stderr and "stopped (end of source)" in result.stderr


def test_an_instantly_refused_stream_says_so_not_that_it_timed_out() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = edge_app("--source", f"http://127.0.0.1:{port}/x.mjpg", "--open-timeout", "10", "--headless")
    line = one_error_line(result)
    assert result.returncode == 5 and "could not be opened: it failed after 0." in line and "within 10 s" not in line


# ------------------------------------------------------------------------------------------ quiet output


def test_quiet_prints_nothing_on_success_and_only_our_line_on_failure(tmp_path, clip) -> None:
    ok = edge_app("-q", "--source", str(clip), "--headless", "--max-frames", "5")
    assert ok.returncode == 0 and ok.stderr == "" and ok.stdout == ""
    for args in (("--camera", "7"), ("--source", "http://127.0.0.1:9/x.mjpg")):
        failed = edge_app("-q", *args, "--headless")
        assert failed.returncode == 5 and failed.stderr.count("\n") == 1, failed.stderr  # no LiteRT, OpenCV or FFmpeg line
        one_error_line(failed)
    verbose = edge_app("-v", "--source", str(clip), "--headless", "--max-frames", "1")
    assert "Created TensorFlow Lite XNNPACK delegate" in verbose.stderr  # still there for whoever asks


# ------------------------------------------------------------------------------------------ records


def test_a_class_per_folder_tree_is_walked_with_recursive_and_records_name_each_file(tmp_path, cifar10_val) -> None:
    tree = tmp_path / "photos"
    names = cifar10_val.classes
    for i in range(6):
        label = names[int(cifar10_val.y[i])]
        (tree / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tree / label / f"{i:03d}.png"), cv2.cvtColor(cifar10_val.x[i], cv2.COLOR_RGB2BGR))
    flat = edge_app("--source", str(tree), "--headless")
    assert flat.returncode == 5 and "only with --recursive" in one_error_line(flat)
    log = tmp_path / "tree.jsonl"
    result = edge_app("--source", str(tree), "--recursive", "--headless", "--log", str(log))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    expected = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))
    assert [r["file"] for r in records] == expected
    assert all(r["source"] == f"image folder {tree}" and "draw" not in r["latency_ms"] for r in records)
    csv_log = tmp_path / "tree.csv"
    assert edge_app("--source", str(tree), "--recursive", "--headless", "--log", str(csv_log)).returncode == 0
    rows = csv_log.read_text().splitlines()
    assert rows[0].endswith(",source,file,model,state,dwell_s") and rows[1].split(",")[-4] == expected[0]


def test_recursive_needs_a_folder(clip) -> None:
    result = edge_app("--source", str(clip), "--recursive", "--headless")
    assert result.returncode == 3 and "--recursive reads the subfolders of an image folder" in one_error_line(result)


# ------------------------------------------------------------------------------------------ the model


def test_sighup_reloads_a_new_model_between_frames_and_refuses_a_broken_one(tmp_path, clip, model_copy) -> None:
    log = tmp_path / "results.jsonl"
    proc = start("--source", str(clip), "--loop", "--realtime", "--headless", "--model", str(model_copy), "--log", str(log))

    def records() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    try:
        assert wait_until(lambda: len(records()) > 10, 20), proc.stderr
        first = records()[0]["model"]
        assert first.startswith("model@")
        # a broken model: refused, the old one keeps classifying
        (model_copy / "model.tflite").write_bytes(b"not a model")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        seen = len(records())
        assert wait_until(lambda: len(records()) > seen + 10, 10), "the app stopped classifying after a refused reload"
        assert {r["model"] for r in records()} == {first}
        # another bundle (224x224, two classes) copied over the folder: swapped in without a restart
        for f in default_model_dir("cats-vs-dogs").iterdir():
            shutil.copy2(f, model_copy / f.name)
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: records()[-1]["model"] != first, 10), "the reload did not take"
        count = len(records())
        assert wait_until(lambda: len(records()) > count + 10, 10)
        stderr = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    all_records = records()
    assert_source_kept_flowing([r["frame"] for r in all_records], stderr)
    new = [r for r in all_records if r["model"] != first]
    assert {c["label"] for r in new for c in r["top"]} <= {"cat", "dog"} and len(new) > 10
    assert "model reload refused" in stderr and "still running " + first in stderr
    assert "reloaded (was " + first in stderr and "while the old one classified" in stderr


def test_a_manifest_with_an_unknown_colour_order_is_refused(model_copy) -> None:
    manifest = model_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["input"]["color_order"] = "XYZ"
    manifest.write_text(json.dumps(data))
    result = edge_app("--model", str(model_copy), "--source", "x.avi", "--headless")
    assert result.returncode == 4 and "color_order 'XYZ' is not one of RGB, BGR, GRAY" in one_error_line(result)


def test_class_count_mismatch_from_the_manifest_names_the_manifest(model_copy) -> None:
    (model_copy / "labels.txt").unlink()
    manifest = model_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["classes"] = data["classes"][:9]
    manifest.write_text(json.dumps(data))
    result = edge_app("--model", str(model_copy), "--source", "x.avi", "--headless")
    line = one_error_line(result)
    assert result.returncode == 4 and f"the manifest {manifest} lists 9 classes but the model outputs 10" in line
    assert "None" not in line


def test_a_bare_http_port_binds_loopback_only(tmp_path, clip) -> None:
    result = edge_app("--source", str(clip), "--headless", "--max-frames", "3", "--http", "0")
    assert result.returncode == 0, result.stderr
    assert "web view on http://127.0.0.1:" in result.stderr


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX only")
def test_sighup_without_a_model_change_keeps_running(tmp_path, clip) -> None:
    log = tmp_path / "r.jsonl"
    proc = start("--model", "cifar10", "--source", str(clip), "--loop", "--realtime", "--headless", "--log", str(log))
    try:
        assert wait_until(lambda: lines_of(log) > 5, 20)
        proc.send_signal(signal.SIGHUP)
        n = lines_of(log)
        assert wait_until(lambda: lines_of(log) > n + 10, 10) and proc.poll() is None
        stderr = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "reloaded (was cifar10@" in stderr


def test_post_api_reload_swaps_a_good_bundle_and_refuses_a_corrupt_one(tmp_path, clip, model_copy) -> None:
    import urllib.error
    import urllib.request

    log = tmp_path / "results.jsonl"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = start("--source", str(clip), "--loop", "--realtime", "--headless", "--model", str(model_copy), "--log", str(log),
                 "--http", f"127.0.0.1:{port}", "--http-token", "s3cret")

    def records() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def post(headers: dict[str, str]) -> tuple[int, dict | str]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/reload", data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=40) as resp:  # noqa: S310 - a fixed http://127.0.0.1 URL
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = err.read().decode()
            return err.code, json.loads(body) if body.startswith("{") else body

    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert wait_until(lambda: len(records()) > 10, 20), proc.stderr
        first = records()[0]["model"]
        assert post({})[0] == 401
        assert post({**auth, "Origin": "http://evil.example"})[0] == 403  # a cross-site form cannot reload
        (model_copy / "model.tflite").write_bytes(b"\x00" * 1000)
        code, body = post(auth)
        assert code == 409 and isinstance(body, dict) and not body["ok"] and body["model"] == first and body["error"]
        seen = len(records())
        assert wait_until(lambda: len(records()) > seen + 10, 10), "the app stopped classifying after a refused reload"
        for f in default_model_dir("cats-vs-dogs").iterdir():
            shutil.copy2(f, model_copy / f.name)
        code, body = post(auth)
        assert code == 200 and isinstance(body, dict) and body["ok"] and body["model"] != first, body
        count = len(records())
        assert wait_until(lambda: len(records()) > count + 10, 10)
        stderr = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    all_records = records()
    assert_source_kept_flowing([r["frame"] for r in all_records], stderr)
    assert {r["model"] for r in all_records} == {first, body["model"]}


def test_model_url_installs_a_newer_bundle_and_refuses_bad_ones(tmp_path, clip) -> None:
    """A real HTTP server publishes bundles; the app polls it every 0.5 s while it classifies a looping video."""
    import functools
    import hashlib
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    published = tmp_path / "published"
    shutil.copytree(default_model_dir("cifar10"), published)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(published))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    live = tmp_path / "live"
    shutil.copytree(default_model_dir("cifar10"), live)
    log = tmp_path / "results.jsonl"
    proc = start("--source", str(clip), "--loop", "--realtime", "--headless", "--model", str(live), "--log", str(log),
                 "--model-url", f"http://127.0.0.1:{httpd.server_port}/", "--model-poll", "0.5")

    def records() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def publish(bundle: Path, model_bytes: bytes | None = None, manifest_sha: str | None = None) -> None:
        for f in bundle.iterdir():
            shutil.copy2(f, published / f.name)
        if model_bytes is not None:
            (published / "model.tflite").write_bytes(model_bytes)
        manifest = json.loads((published / "manifest.json").read_text())
        manifest["sha256"] = manifest_sha or hashlib.sha256((published / "model.tflite").read_bytes()).hexdigest()
        manifest.pop("size_bytes", None)
        (published / "manifest.json").write_text(json.dumps(manifest))

    try:
        assert wait_until(lambda: len(records()) > 10, 20), proc.stderr
        first = records()[0]["model"]
        time.sleep(1.5)  # the same bundle is published: nothing to do
        assert {r["model"] for r in records()} == {first} and not (tmp_path / "live.previous").exists() and not live.is_symlink()
        # a half-published bundle: its model does not match the manifest's sha256
        publish(default_model_dir("cats-vs-dogs"), manifest_sha="0" * 64)
        time.sleep(1.5)
        assert {r["model"] for r in records()} == {first}
        # a bundle whose sha256 matches but which is no model: installed, refused by the app, rolled back on disk
        # (live became a symlink into .live.versions/: switched there and back, the refused bundle deleted)
        publish(default_model_dir("cats-vs-dogs"), model_bytes=b"TFL3 but not really a model" * 10)
        assert wait_until(lambda: live.is_symlink() and len(list((tmp_path / ".live.versions").iterdir())) == 1
                          and (live / "model.tflite").read_bytes() == (default_model_dir("cifar10") / "model.tflite").read_bytes(), 10)
        time.sleep(1.0)
        assert {r["model"] for r in records()} == {first}
        # a good new bundle: swapped in between frames
        publish(default_model_dir("cats-vs-dogs"))
        assert wait_until(lambda: records()[-1]["model"] != first, 15), "the published bundle was not installed"
        count = len(records())
        assert wait_until(lambda: len(records()) > count + 10, 10)
        stderr = stop(proc)
    finally:
        httpd.shutdown()
        if proc.poll() is None:
            proc.kill()
    all_records = records()
    assert_source_kept_flowing([r["frame"] for r in all_records], stderr)
    assert (live / "model.tflite").read_bytes() == (default_model_dir("cats-vs-dogs") / "model.tflite").read_bytes()
    assert len(list((tmp_path / ".live.versions").iterdir())) == 2 and (tmp_path / "live.previous").is_symlink()  # new + previous
    assert "the manifest says 000000000000: a damaged or half-published bundle, not installed" in stderr
    assert "model-url: the app refused the bundle" in stderr and "restored the previous files" in stderr
    assert "model-url: installed " in stderr
