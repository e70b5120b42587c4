"""The dataset doctor (``edge_app.doctor``, ``edge-app doctor``, ``GET /api/review/doctor`` and the review page) on real
photos of ``cats-vs-dogs.tar.gz`` (its test split, which the shipped cats-vs-dogs model never trained on), arranged in
class folders with planted problems: each finding names exactly the planted files, clean photos give none, and the
data is never changed."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.doctor import (
    FINDINGS_EXIT,
    NEAR_BITS,
    SERIOUS,
    Finding,
    dhash,
    examine,
    hamming,
    model_features,
    phash,
)
from edge_app.model import Classifier, default_model_dir, resolve_model
from tests.edge_app.helpers import edge_app, wait_until

pytestmark = pytest.mark.timeout(300)
PER_CLASS = 10
TOKEN = "doctor-t0ken"  # noqa: S105 - a test server's token
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(resolve_model(default_model_dir("cats-vs-dogs")))


@pytest.fixture(scope="module")
def test_split(tmp_path_factory, shared_datasets: Path) -> Path:
    """The archive's test split (2,000 photos; the shipped cats-vs-dogs model trained on the train split) as ``cat/``, ``dog/``."""
    root = tmp_path_factory.mktemp("cats-vs-dogs")
    with tarfile.open(shared_datasets / "cats-vs-dogs.tar.gz") as tar:
        tar.extractall(root, members=[m for m in tar.getmembers() if m.name.startswith("test/")], filter="data")
    return root / "test"


@pytest.fixture(scope="module")
def photos(test_split: Path, classifier: Classifier) -> dict[str, list[Path]]:
    """Real test-split photos by class, in number order: those at least 120 px a side that the shipped model gives their
    own class with >= 0.9 (a folder of such photos is correctly labelled: the clean set), first ``PER_CLASS + 6`` each."""
    picked: dict[str, list[Path]] = {}
    for label in ("cat", "dog"):
        picked[label] = []
        for path in sorted((test_split / label).glob("*.jpg"), key=lambda p: int(p.stem.split(".")[1])):
            image = read(path)
            if min(image.shape[:2]) >= 120 and classifier.scores(image)[classifier.labels.index(label)] >= 0.9:
                picked[label].append(path)
            if len(picked[label]) == PER_CLASS + 6:
                break
    return picked


def read(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    assert image is not None, path
    return image


def clean_set(photos: dict[str, list[Path]], folder: Path, per_class: int = PER_CLASS) -> Path:
    """``folder/train/<class>/`` with the first ``per_class`` photos of each class, copied under their own names."""
    for label, paths in photos.items():
        (folder / "train" / label).mkdir(parents=True)
        for p in paths[:per_class]:
            shutil.copy(p, folder / "train" / label / p.name)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def by_kind(findings: list[Finding]) -> dict[str, Finding]:
    kinds = [f.kind for f in findings]
    assert len(kinds) == len(set(kinds)), kinds  # one line a kind of problem
    return {f.kind: f for f in findings}


def pair(*names: str) -> tuple[str, ...]:
    """A group of copies as the doctor lists it: in the dataset's order (split, class, file name)."""
    return tuple(sorted(names))


def reencoded(path: Path, scale: float = 2 / 3, quality: int = 60) -> bytes:
    image = read(path)
    small = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_clean_photos_give_no_finding(tmp_path: Path, photos, classifier) -> None:
    root = clean_set(photos, tmp_path / "clean")
    (root / "val" / "cat").mkdir(parents=True)
    shutil.copy(photos["cat"][PER_CLASS], root / "val" / "cat")  # a validation photo of its own
    before = snapshot(root)
    assert examine(root, input_size=224, features=model_features(classifier)) == []
    assert examine(root / "train", input_size=224) == []  # a folder of class folders, as train-model reads it too
    assert snapshot(root) == before  # read, never changed


def test_planted_copies_are_named_and_across_classes_and_splits_is_serious(tmp_path: Path, photos) -> None:
    root = clean_set(photos, tmp_path / "planted")
    cat, dog = photos["cat"], photos["dog"]
    shutil.copy(cat[1], root / "train" / "cat" / "again.jpg")  # exact, within a class
    shutil.copy(dog[2], root / "train" / "cat" / "copied-dog.jpg")  # exact, across classes
    (root / "train" / "cat" / "smaller.jpg").write_bytes(reencoded(cat[3]))  # near: 2/3 the size, JPEG quality 60
    bright = cv2.convertScaleAbs(read(dog[4]), alpha=1.1, beta=10)
    cv2.imwrite(str(root / "train" / "cat" / "brighter-dog.jpg"), bright)  # near, across classes
    (root / "val" / "dog").mkdir(parents=True)
    shutil.copy(dog[5], root / "val" / "dog" / "leaked.jpg")  # exact, train and validation
    (root / "val" / "dog" / "leaked-small.jpg").write_bytes(reencoded(dog[6]))  # near, train and validation
    shutil.copy(dog[PER_CLASS], root / "val" / "dog")  # a validation photo of its own: no finding
    before = snapshot(root)
    found = by_kind(examine(root))
    assert snapshot(root) == before
    t = "train"
    assert found["duplicates"].groups == (pair(f"{t}/cat/{cat[1].name}", f"{t}/cat/again.jpg"),)
    assert found["duplicates-across-classes"].groups == (pair(f"{t}/cat/copied-dog.jpg", f"{t}/dog/{dog[2].name}"),)
    assert found["duplicates-across-split"].groups == (pair(f"{t}/dog/{dog[5].name}", "val/dog/leaked.jpg"),)
    assert found["near-duplicates"].groups == (pair(f"{t}/cat/{cat[3].name}", f"{t}/cat/smaller.jpg"),)
    assert found["near-duplicates-across-classes"].groups == (pair(f"{t}/cat/brighter-dog.jpg", f"{t}/dog/{dog[4].name}"),)
    assert found["near-duplicates-across-split"].groups == (pair(f"{t}/dog/{dog[6].name}", "val/dog/leaked-small.jpg"),)
    assert set(found) == {"duplicates", "duplicates-across-classes", "duplicates-across-split", "near-duplicates",
                          "near-duplicates-across-classes", "near-duplicates-across-split"}
    for kind, f in found.items():
        assert f.severity == (SERIOUS if "across" in kind else "warning"), kind
        assert all(name in f.message for name in f.files), f.message  # one line naming the files
        assert "\n" not in f.message
    assert [f.severity for f in examine(root)][:4] == [SERIOUS] * 4  # serious ones first


def test_near_duplicate_threshold_separates_copies_from_other_photos(photos) -> None:
    """What NEAR_BITS rests on, on these real photos: every re-encoded copy is within it, no two different photos are."""
    paths = photos["cat"] + photos["dog"]
    grey = [read(p, cv2.IMREAD_GRAYSCALE) for p in paths]
    d, p = np.stack([dhash(g) for g in grey]), np.stack([phash(g) for g in grey])
    apart = np.maximum(hamming(d, d), hamming(p, p)) + np.eye(len(paths), dtype=np.uint8) * 64
    assert apart.min() > NEAR_BITS
    for path, g in zip(paths, grey, strict=True):
        copy = cv2.imdecode(np.frombuffer(reencoded(path), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert copy is not None
        assert hamming(dhash(copy)[None], dhash(g)[None])[0, 0] <= NEAR_BITS and hamming(phash(copy)[None], phash(g)[None])[0, 0] <= NEAR_BITS


def test_small_photos_and_a_capped_list(tmp_path: Path, photos) -> None:
    root = clean_set(photos, tmp_path / "small")
    extra = photos["dog"][PER_CLASS:PER_CLASS + 6]
    for i, p in enumerate(extra):  # 6 small dogs: 100x100 for a 224 input (half is 112)
        cv2.imwrite(str(root / "train" / "dog" / f"small-{i}.jpg"), cv2.resize(read(p), (100, 100), interpolation=cv2.INTER_AREA))
    found = by_kind(examine(root, input_size=224))
    small = found["small-images"]
    assert small.files == tuple(f"train/dog/small-{i}.jpg" for i in range(6))
    assert small.message.startswith("6 photo(s) smaller than half the model input (112x112 of 224x224")
    assert "train/dog/small-4.jpg (100x100)" in small.message and "small-5" not in small.message and small.message.endswith("and 1 more")
    assert "small-images" not in by_kind(examine(root, input_size=192))  # 100 px is more than half of 192
    assert "small-images" not in by_kind(examine(root))  # no input size: not checked
    assert set(by_kind(examine(root, input_size=(224, 224)))) == {"small-images"}


def test_imbalance_over_three_times(tmp_path: Path, photos) -> None:
    root = clean_set(photos, tmp_path / "imbalanced")
    dogs = sorted((root / "train" / "dog").iterdir())
    for p in dogs[4:]:  # 10 cats, 4 dogs: 2.5x, not reported
        p.unlink()
    assert examine(root) == []
    dogs[3].unlink()  # 10 cats, 3 dogs: 3.3x
    (f,) = examine(root)
    assert (f.kind, f.files) == ("imbalance", ("train/cat", "train/dog"))
    assert f.message.startswith("class imbalance 3.3x (over 3x): cat has 10 photos, dog 3;")


def test_mislabel_found_by_cross_validated_model_features(tmp_path: Path, photos, classifier) -> None:
    """A cat photo in the dog folder: its 10 most similar photos (the shipped model's scores as features, the photo
    itself left out) are cats, so it is named; nothing else is, and without features it is not checked."""
    root = clean_set(photos, tmp_path / "mislabelled")
    stray = photos["cat"][PER_CLASS]
    shutil.copy(stray, root / "train" / "dog" / "stray.jpg")
    (f,) = examine(root, features=model_features(classifier))
    assert (f.kind, f.files) == ("mislabels", ("train/dog/stray.jpg",))
    assert "train/dog/stray.jpg looks like cat (100% of its 10 nearest)" in f.message
    assert examine(root) == []


def test_the_real_test_split_s_own_mislabels_and_near_copies_are_named(tmp_path: Path, test_split: Path, classifier) -> None:
    """The archive's test photos as they are (numbers 4001-4599, 1,198 photos): the doctor names its beagle filed as a cat
    (cat.4085) and its cat filed as a dog (dog.4334), both confirmed by eye, among under 1 % of the photos, and its one
    pair of near copies (cat.4126 and cat.4575, the same kittens)."""
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for path in (test_split / label).glob("*.jpg"):
            if int(path.stem.split(".")[1]) < 4600:
                shutil.copy(path, tmp_path / label)
    before = snapshot(tmp_path)
    found = by_kind(examine(tmp_path, features=model_features(classifier)))
    assert set(found) == {"mislabels", "near-duplicates"}
    assert {"cat/cat.4085.jpg", "dog/dog.4334.jpg"} <= set(found["mislabels"].files) and len(found["mislabels"].files) <= 12, found["mislabels"]
    assert found["near-duplicates"].groups == (("cat/cat.4126.jpg", "cat/cat.4575.jpg"),)
    assert snapshot(tmp_path) == before


def test_zones_need_a_none_class(tmp_path: Path, photos) -> None:
    root = clean_set(photos, tmp_path / "zones")
    assert examine(root) == []
    (f,) = examine(root, zones=True)
    assert (f.kind, f.files) == ("no-background", ("train/cat", "train/dog"))
    assert "'none'" in f.message and "cat, dog" in f.message
    none = root / "train" / "none"
    none.mkdir()
    for i, p in enumerate(photos["dog"][:4]):  # an empty zone's crops: here the corner of a photo
        cv2.imwrite(str(none / f"empty-{i}.jpg"), read(p)[:60, :60])
    assert examine(root, zones=True) == []


def test_unreadable_files_and_empty_classes(tmp_path: Path, photos) -> None:
    root = clean_set(photos, tmp_path / "broken")
    (root / "train" / "cat" / "notes.jpg").write_text("not a photo")
    (root / "train" / "bird").mkdir()
    (root / "train" / ".hidden").mkdir()  # skipped, as train-model skips it
    found = by_kind(examine(root))
    assert set(found) == {"unreadable", "empty-class"}
    assert found["unreadable"].files == ("train/cat/notes.jpg",) and found["empty-class"].files == ("train/bird",)


def test_cli_prints_a_line_a_finding_and_strict_exits_non_zero(tmp_path: Path, photos, capsys) -> None:
    from edge_app.cli import main

    root = clean_set(photos, tmp_path / "cli")
    assert main(["doctor", str(root), "--strict", "-q"]) == 0
    assert capsys.readouterr().out == f"{root}: no findings\n"
    shutil.copy(photos["dog"][0], root / "train" / "cat" / "copy.jpg")
    assert main(["doctor", str(root), "-q"]) == 0  # findings are warnings
    out = capsys.readouterr().out.splitlines()
    assert out == [f"serious: duplicates-across-classes: 1 group(s) of exact copies in two or more classes (the model is taught different "
                   f"labels for one picture): train/cat/copy.jpg = train/dog/{photos['dog'][0].name}"]
    assert main(["doctor", str(root), "--strict", "--zones", "--json", "-q"]) == FINDINGS_EXIT
    assert [f["kind"] for f in json.loads(capsys.readouterr().out)] == ["duplicates-across-classes", "no-background"]
    assert main(["doctor", str(tmp_path / "missing"), "-q"]) == 5  # ExitCode.SOURCE, one line
    assert capsys.readouterr().err.strip().splitlines() == [f"edge-app: error: dataset folder not found: {tmp_path / 'missing'}; "
                                                            "give a folder DIR/train/<class>/*.jpg or DIR/<class>/*.jpg"]


def test_cli_with_a_model_finds_the_mislabel(tmp_path: Path, photos) -> None:
    """The console script, as a user runs it: --model gives the features and the input size."""
    root = clean_set(photos, tmp_path / "cli-model")
    shutil.copy(photos["cat"][PER_CLASS], root / "train" / "dog" / "stray.jpg")
    result = edge_app("doctor", str(root), "--model", "cats-vs-dogs", "--strict", "-q", timeout=120)
    assert result.returncode == FINDINGS_EXIT, result.stderr
    assert result.stdout.startswith("warning: mislabels: 1 suspected mislabel(s)") and result.stdout.count("\n") == 1, result.stdout
    assert result.stderr == ""


def test_help_names_the_subcommand_and_the_strict_exit() -> None:
    listed = edge_app("--help")
    assert listed.returncode == 0 and "edge-app doctor   check a photo set before training" in listed.stdout
    helped = edge_app("doctor", "--help")
    assert helped.returncode == 0 and f"--strict           exit {FINDINGS_EXIT} when there is any finding" in helped.stdout, helped.stdout


def test_image_suffixes_are_train_models() -> None:
    from converter.data.datasets import IMAGE_SUFFIXES as TRAIN_MODEL_READS
    from edge_app.doctor import IMAGE_SUFFIXES

    assert set(IMAGE_SUFFIXES) == set(TRAIN_MODEL_READS)


# ---------------------------------------------------------------------- the review page


def get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_review_api_reports_the_findings_of_the_collect_folder(tmp_path: Path, photos) -> None:
    """GET /api/review/doctor on the live view's port (the real server, with a token): the planted copy across classes,
    the small photos with ?input_size=, and zones from the inbox's zone crops."""
    from edge_app.web import WebServer

    root = clean_set(photos, tmp_path / "collected")
    (root / "inbox").mkdir()
    shutil.copy(photos["dog"][0], root / "train" / "cat" / "copy.jpg")
    with WebServer(port=0, token=TOKEN, review=root, labels=["cat", "dog"]) as web:
        code, body = get(web.port, "/api/review/doctor")
        assert code == 200 and body["photos"] == 2 * PER_CLASS + 1
        assert body["checked"] == {"small_images": None, "zones": False, "mislabels": False}
        copied = ["train/cat/copy.jpg", f"train/dog/{photos['dog'][0].name}"]
        assert [(f["kind"], f["files"]) for f in body["findings"]] == [("duplicates-across-classes", copied)]
        cv2.imwrite(str(root / "inbox" / "a.jpg"), read(photos["cat"][0])[:50, :50])  # a zone crop --collect saved
        (root / "inbox" / "a.json").write_text(json.dumps({"label": "cat", "score": 0.4, "zone": "door"}))
        (root / "train" / "cat" / "copy.jpg").unlink()  # the user fixed it
        code, body = get(web.port, "/api/review/doctor?input_size=400")
        assert code == 200 and body["checked"] == {"small_images": [400, 400], "zones": True, "mislabels": False}
        kinds = {f["kind"]: f for f in body["findings"]}
        assert set(kinds) == {"no-background", "small-images"} and len(kinds["small-images"]["files"]) == body["photos"] == 2 * PER_CLASS
        assert [f["kind"] for f in get(web.port, "/api/review/doctor?zones=0")[1]["findings"]] == []
        assert get(web.port, "/api/review/doctor?input_size=big")[0] == 400
        assert get(web.port, "/api/review/doctor?zones=yes")[0] == 400
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        conn.request("GET", "/api/review/doctor")
        assert conn.getresponse().status == 401  # the token, as every review route
        conn.close()


def test_review_routes_with_the_model_check_mislabels_and_small_photos_and_cache_the_features(tmp_path: Path, photos, classifier) -> None:
    """``review_routes(input_size=..., features=...)``, as the app gives them its model: the stray cat in the dog folder
    and the small photo are named without a query; a second request runs the model on no photo again, a new photo once."""
    import uvicorn
    from starlette.applications import Starlette

    from edge_app.web.review import review_routes

    root = clean_set(photos, tmp_path / "collected")
    shutil.copy(photos["cat"][PER_CLASS], root / "train" / "dog" / "stray.jpg")
    cv2.imwrite(str(root / "train" / "cat" / "small.jpg"), cv2.resize(read(photos["cat"][PER_CLASS + 1]), (100, 100)))
    runs: list[int] = []
    scores = model_features(classifier)

    def counted(image: np.ndarray) -> np.ndarray:
        runs.append(1)
        return scores(image)

    app = Starlette(routes=review_routes(root, input_size=lambda: classifier.size, features=lambda: counted))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10)
        port = server.servers[0].sockets[0].getsockname()[1]
        code, body = get(port, "/api/review/doctor")
        assert code == 200 and body["checked"] == {"small_images": [224, 224], "zones": False, "mislabels": True}
        assert {f["kind"]: f["files"] for f in body["findings"]} == {"mislabels": ["train/dog/stray.jpg"], "small-images": ["train/cat/small.jpg"]}
        assert len(runs) == 2 * PER_CLASS + 2
        assert get(port, "/api/review/doctor") == (200, body) and len(runs) == 2 * PER_CLASS + 2  # cached
        shutil.copy(photos["dog"][PER_CLASS], root / "train" / "dog")
        assert get(port, "/api/review/doctor")[1]["photos"] == 2 * PER_CLASS + 3 and len(runs) == 2 * PER_CLASS + 3
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_review_page_shows_the_findings(tmp_path: Path, photos) -> None:
    from edge_app.web import WebServer

    root = clean_set(photos, tmp_path / "page")
    (root / "inbox").mkdir()
    shutil.copy(photos["dog"][0], root / "train" / "cat" / "copy.jpg")
    with WebServer(port=0, token=TOKEN, review=root, labels=["cat", "dog"]) as web:
        assert CHROMIUM is not None
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
               f"http://127.0.0.1:{web.port}/review?token={TOKEN}"]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    assert f"1 finding(s) in {2 * PER_CLASS + 1} photo(s); not checked: small photos" in dom, dom[-3000:]
    assert '<li class="serious" data-kind="duplicates-across-classes">' in dom and f"train/cat/copy.jpg = train/dog/{photos['dog'][0].name}" in dom


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_running_app_s_review_page_checks_with_its_own_model(tmp_path: Path, photos, write_video) -> None:
    """``edge-app --model cats-vs-dogs --collect DIR --http``: /api/review/doctor, asked with no query, checks small photos
    against the running model's input (224 px) and names the stray cat in dog/ from that model's scores."""
    import sys

    from tests.edge_app.helpers import env

    root = clean_set(photos, tmp_path / "collect")
    shutil.copy(photos["cat"][PER_CLASS], root / "train" / "dog" / "stray.jpg")
    cv2.imwrite(str(root / "train" / "cat" / "small.jpg"), cv2.resize(read(photos["cat"][PER_CLASS + 1]), (100, 100)))
    before = snapshot(root / "train")
    frames = [cv2.cvtColor(read(p), cv2.COLOR_BGR2RGB) for p in photos["dog"][:2]]
    scene = write_video(tmp_path / "scene.avi", frames, size=(320, 240), repeat=10)
    port = _free_port()
    cmd = [sys.executable, "-m", "edge_app", "--source", str(scene), "--loop", "--realtime", "--headless",
           "--model", str(default_model_dir("cats-vs-dogs")), "--collect", str(root), "--collect-interval", "3600",
           "--http", f"127.0.0.1:{port}", "--http-token", TOKEN, "--stats-interval", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    try:
        def answered() -> bool:
            try:
                return get(port, "/api/review/doctor")[0] == 200
            except OSError:
                return proc.poll() is not None
        assert wait_until(answered, 60) and proc.poll() is None
        code, body = get(port, "/api/review/doctor")
        assert code == 200 and body["checked"] == {"small_images": [224, 224], "zones": False, "mislabels": True}, body
        assert {f["kind"]: f["files"] for f in body["findings"]} == {"mislabels": ["train/dog/stray.jpg"], "small-images": ["train/cat/small.jpg"]}
        assert get(port, "/api/review/doctor") == (200, body)  # the same features, cached: the same answer
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-2000:]
    assert snapshot(root / "train") == before  # the doctor reads; nothing moved or changed


def test_running_model_gives_a_second_classifier_s_features_until_the_model_changes(photos) -> None:
    """``RunningModel(slot)``: the slot's input size; features from a classifier of its own (not the frame loop's), the
    same function object while the slot runs the same model (the doctor's cache lasts), a new one after a switch."""
    from edge_app.doctor import RunningModel
    from edge_app.pipeline.modelslot import ModelSlot, open_model

    slot = ModelSlot(lambda m: open_model(m, None, delegate="cpu", device=None, threads=None), threading.Event())
    opened: list[object] = []

    def opener(files):  # the real Classifier, counted
        classifier = Classifier(files)
        opened.append(classifier)
        return classifier

    running = RunningModel(slot, opener)
    assert running.input_size() is None and running.features() is None  # before the model is open
    slot.load(default_model_dir("cats-vs-dogs"), None)
    first = running.features()
    assert first is not None and running.input_size() == (224, 224)
    assert running.features() is first and len(opened) == 1 and opened[0] is not slot.classifier
    image = read(photos["cat"][0])
    assert slot.classifier is not None
    assert np.array_equal(first(image), np.asarray(slot.classifier.scores(image), np.float32))
    slot.load(default_model_dir("cifar10"), None)  # another model: a new function, the cache starts afresh
    second = running.features()
    assert second is not None and second is not first and len(opened) == 2 and running.input_size() == (32, 32)
    assert second(image).shape == (10,)


def test_edge_app_review_with_a_model_checks_with_that_model(tmp_path: Path, photos, classifier) -> None:
    """``edge-app review DIR --model M``'s application: the doctor checks small photos against M's input and mislabels with its scores."""
    from starlette.testclient import TestClient

    from edge_app.review import create_app

    root = clean_set(photos, tmp_path / "collected")
    shutil.copy(photos["dog"][PER_CLASS], root / "train" / "cat" / "stray.jpg")
    with TestClient(create_app(root, TOKEN, classifier.labels, model=classifier)) as client:
        body = client.get("/api/review/doctor", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert body["checked"] == {"small_images": [224, 224], "zones": False, "mislabels": True}, body
    assert {f["kind"]: f["files"] for f in body["findings"]} == {"mislabels": ["train/cat/stray.jpg"]}
    with TestClient(create_app(root, TOKEN, classifier.labels)) as client:  # without a model: neither check
        body = client.get("/api/review/doctor", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert body["checked"] == {"small_images": None, "zones": False, "mislabels": False} and body["findings"] == []
