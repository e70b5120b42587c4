"""The models page's back end (``ModelDesk``) on a real running app: deploy a candidate bundle between frames, roll
back, refuse a candidate the app cannot run (switched back on disk, the old model never stops), and say why an
action is impossible. Real bundles (the shipped ones), a real MJPG video of real CIFAR-10 photos."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from converter.data.datasets import Dataset
from edge_app import bundles
from edge_app.app import App
from edge_app.deploy import CANDIDATE, REPORT, ModelDesk
from edge_app.model import default_model_dir
from tests.edge_app.helpers import wait_until
from tests.edge_app.test_app import Collect, config, run_in_thread

pytestmark = pytest.mark.timeout(180)

CIFAR, CATS = default_model_dir("cifar10"), default_model_dir("cats-vs-dogs")


@pytest.fixture(scope="module")
def video(tmp_path_factory, cifar10_val: Dataset, write_video) -> Path:
    return write_video(tmp_path_factory.mktemp("deploy") / "clip.avi", cifar10_val.x[:30], repeat=3)


def _candidate(collect: Path, source: Path, model_bytes: bytes | None = None) -> Path:
    cand = collect / CANDIDATE
    shutil.rmtree(cand, ignore_errors=True)
    shutil.copytree(source, cand)
    if model_bytes is not None:  # a bundle consistent with its manifest that is no model: only opening it fails
        import hashlib

        (cand / "model.tflite").write_bytes(model_bytes)
        manifest = json.loads((cand / "manifest.json").read_text())
        manifest.update(sha256=hashlib.sha256(model_bytes).hexdigest(), size_bytes=len(model_bytes))
        (cand / "manifest.json").write_text(json.dumps(manifest))
    (cand / REPORT).write_text(json.dumps({"val_accuracy": {"int8": 0.9}, "recall": {"cat": 0.9, "dog": 0.9}}))
    return cand


def _running(model_dir: Path, collect: Path, video: Path) -> tuple[App, ModelDesk, Collect]:
    """An app (not yet started) on ``video`` with ``model_dir`` a copy of the shipped cifar10 bundle, and its desk."""
    shutil.copytree(CIFAR, model_dir)
    sink = Collect()
    app = App(config(source=str(video), loop=True, realtime=True, model=str(model_dir)), extra_sinks=[sink], handle_signals=False)
    return app, ModelDesk(model_dir, collect, reload=app.reload_and_wait, running=lambda: app.model_id), sink


def test_deploy_then_rollback_swap_bundles_between_frames(tmp_path, video) -> None:
    model_dir, collect = tmp_path / "model", tmp_path / "collect"
    _candidate(collect, CATS)
    app, desk, sink = _running(model_dir, collect, video)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: len(sink.results) > 5, 30.0), app.status()
        first = app.model_id
        assert first is not None and first.startswith("model@")
        page = desk.overview()
        assert page["deploy"]["possible"] and not page["rollback"]["possible"] and page["candidate"]["classes"] == ["cat", "dog"]
        assert page["candidate"]["report"]["recall"] == {"cat": 0.9, "dog": 0.9} and page["running"]["manifest"]["classes"][0] == "airplane"

        done = desk.deploy()
        assert done["ok"] and done["was"] == first and done["model"] != first, done
        count = len(sink.results)
        assert wait_until(lambda: len(sink.results) > count + 5, 10.0)
        assert sink.results[-1].model == done["model"] and {c.label for c in sink.results[-1].top} <= {"cat", "dog"}
        assert model_dir.is_symlink() and bundles.complete(model_dir) is None
        assert (model_dir / "manifest.json").read_bytes() == (CATS / "manifest.json").read_bytes()
        assert desk.overview()["rollback"]["possible"] and desk.overview()["previous"]["classes"][0] == "airplane"

        back = desk.rollback()
        assert back["ok"] and back["model"] == first, back
        count = len(sink.results)
        assert wait_until(lambda: len(sink.results) > count + 5, 10.0)
        assert sink.results[-1].model == first
        assert (model_dir / "model.tflite").read_bytes() == (CIFAR / "model.tflite").read_bytes()
        again = desk.rollback()  # the rolled-back bundle is kept as previous: a second rollback undoes the first
        assert again["ok"] and again["model"] == done["model"], again
    finally:
        app.request_stop("test over")
        thread.join(15.0)
    assert box == [0]
    frames = [r.index for r in sink.results]
    assert all(b > a for a, b in itertools.pairwise(frames))  # the source never reopened


def test_a_candidate_the_app_refuses_is_switched_back_and_the_old_model_runs_on(tmp_path, video) -> None:
    model_dir, collect = tmp_path / "model", tmp_path / "collect"
    _candidate(collect, CATS, model_bytes=b"TFL3 but not really a model" * 10)
    app, desk, sink = _running(model_dir, collect, video)
    thread, box = run_in_thread(app)
    try:
        assert wait_until(lambda: len(sink.results) > 5, 30.0), app.status()
        first = app.model_id
        refused = desk.deploy()
        assert not refused["ok"] and "the app refused the candidate" in refused["error"] and f"{first} runs on" in refused["error"], refused
        assert (model_dir / "model.tflite").read_bytes() == (CIFAR / "model.tflite").read_bytes()  # switched back on disk
        assert desk.overview()["last_error"] == refused["error"]
        count = len(sink.results)
        assert wait_until(lambda: len(sink.results) > count + 5, 10.0) and sink.results[-1].model == first
        (collect / CANDIDATE / "labels.txt").unlink()  # incomplete: refused before anything is installed
        assert "not a usable bundle" in desk.deploy()["error"]
    finally:
        app.request_stop("test over")
        thread.join(15.0)
    assert box == [0]


def test_what_cannot_be_done_says_why(tmp_path) -> None:
    shipped = ModelDesk(None, tmp_path, reload=lambda t: {"ok": True}, running=lambda: "cifar10@x")
    assert "set model = DIR" in shipped.deploy()["error"]
    assert "shipped bundle" in ModelDesk(CIFAR, tmp_path, reload=lambda t: {"ok": True}, running=lambda: None).rollback()["error"]
    fresh = tmp_path / "model"
    shutil.copytree(CIFAR, fresh)
    desk = ModelDesk(fresh, tmp_path / "collect", reload=lambda t: {"ok": True}, running=lambda: None)
    page = desk.overview()
    assert not page["deploy"]["possible"] and "no candidate" in page["deploy"]["why_not"]
    assert "no previous bundle" in page["rollback"]["why_not"] and "no previous bundle" in desk.rollback()["error"]
    assert page["retrain"]["command"] == f"retrain-model {tmp_path / 'collect'} --current {fresh}"
    no_collect = ModelDesk(fresh, None, reload=lambda t: {"ok": True}, running=lambda: None)
    assert "needs --collect DIR" in no_collect.start_retrain()["error"]


@pytest.mark.timeout(400)
def test_retrain_runs_in_the_background_and_its_candidate_deploys(tmp_path, shared_datasets) -> None:
    """A real retrain-model run (16 labelled photos, 96 px) started from the desk while the device runs the default
    ImageNet bundle: progress lines while it runs, then a candidate with its report on the page (compared with the
    1,000-label running model), which deploys into the device's model folder."""
    import cv2

    from converter.data.datasets import stratified_sample, train_val

    train, _ = train_val(shared_datasets / "cats-vs-dogs.tar.gz", (96, 96))
    train = train.subset(stratified_sample(train.y, 8))
    collect = tmp_path / "collect"
    for i, (img, y) in enumerate(zip(train.x, train.y, strict=True)):
        (collect / "train" / train.classes[y]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(collect / "train" / train.classes[y] / f"{i:03d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)  # the device's own folder seeded from the default bundle
    reloads: list[float] = []
    desk = ModelDesk(model_dir, collect, reload=lambda t: reloads.append(t) or {"ok": True, "model": "new"}, running=lambda: "old",
                     retrain_args=("--image-size", "96", "--epochs", "10"))
    assert desk.retrain_available()
    started = desk.start_retrain()
    assert started["ok"] and started["job"]["state"] == "running", started
    assert "already running" in desk.start_retrain()["error"]
    job = desk.wait_retrain(360)
    assert job is not None and job.state() == "done", (job.to_json() if job else None)
    assert any("candidate" in line for line in job.lines), list(job.lines)  # retrain-model's own lines are the progress
    page = desk.overview()
    assert page["retrain"]["job"]["state"] == "done" and page["candidate"]["report"]["val_images"] == 4
    assert set(page["candidate"]["report"]["recall"]) == {"cat", "dog"} and page["deploy"]["possible"], page["deploy"]
    confusion = page["candidate"]["report"]["confusion"]  # rows: true class, columns: predicted
    assert len(confusion) == 2 and sum(map(sum, confusion)) == 4
    score = page["candidate"]["training_score"]  # 6 photos a class: scored by cross-validation, with its interval
    assert score["scored_by"] == "cross-validation" and score["ci95"][0] <= score["accuracy"] <= score["ci95"][1], score
    current = page["candidate"]["report"]["current"]  # --current: the running ImageNet bundle, on the same 4 photos
    assert current["model"] == str(model_dir) and len(current["labels"]) == 1000 and current["labels"][281] == "tabby"
    assert current["images"] == 4 and current["new_classes"] == ["cat", "dog"] and current["disagreement"] == 1.0  # no class in common
    assert page["running"]["manifest"]["classes"][0] == "tench" and len(page["running"]["manifest"]["classes"]) == 1000
    assert desk.deploy()["ok"] and reloads and bundles.complete(model_dir) is None
    assert (model_dir / "manifest.json").read_bytes() == (collect / CANDIDATE / "manifest.json").read_bytes()


def test_a_device_model_folder_is_seeded_from_a_shipped_bundle_on_first_start(tmp_path, video) -> None:
    """model = DIR that does not exist yet, model_seed = cats-vs-dogs: check-config says what the run will do and makes
    nothing; the run makes DIR a copy of the shipped bundle in the switchable layout, ready for Deploy."""
    from tests.edge_app.helpers import edge_app

    folder = tmp_path / "model"
    args = ["--model", str(folder), "--model-seed", "cats-vs-dogs", "--source", str(video), "--headless"]
    checked = edge_app(*args, "--check-config", timeout=120)
    assert checked.returncode == 0 and "does not exist yet: the run makes it a copy of the shipped cats-vs-dogs bundle" in checked.stdout
    assert not folder.exists() and not folder.is_symlink()
    ran = edge_app(*args, "--max-frames", "3", timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "made it a copy of the shipped cats-vs-dogs bundle" in ran.stderr
    assert folder.is_symlink() and bundles.complete(folder) is None
    assert (folder / "model.tflite").read_bytes() == (CATS / "model.tflite").read_bytes()
    again = edge_app(*args, "--max-frames", "3", timeout=120)  # later starts use it as it is
    assert again.returncode == 0 and "made it a copy" not in again.stderr
    typo = edge_app("--model", str(tmp_path / "nowhere" / "model"), "--model-seed", "cifar10", "--source", str(video), "--headless",
                    "--check-config", timeout=120)
    assert typo.returncode == 4 and "model not found" in typo.stderr  # only in an existing folder: a typo is not created


def test_a_relative_model_folder_name_is_seeded_in_the_working_directory(tmp_path, video) -> None:
    """``--model my-model --model-seed cifar10`` from the folder that should hold it (the README's own-classes step 1
    without ``$PWD``): a bare name that is no shipped bundle is a folder in the working directory, seeded there; a bare
    shipped bundle's name keeps meaning that bundle."""
    import subprocess
    import sys

    from tests.edge_app.helpers import env

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge_app", *args, "--source", str(video), "--headless", "--max-frames", "3"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env(), check=False)

    ran = run("--model", "my-model", "--model-seed", "cifar10")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "my-model").is_symlink() and bundles.complete(tmp_path / "my-model") is None
    assert (tmp_path / "my-model" / "model.tflite").read_bytes() == (default_model_dir("cifar10") / "model.tflite").read_bytes()
    shipped = run("--model", "cats-vs-dogs", "--model-seed", "cifar10")
    assert shipped.returncode == 0, shipped.stderr
    assert not (tmp_path / "cats-vs-dogs").exists() and "made it a copy" not in shipped.stderr
