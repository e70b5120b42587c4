"""The review page on real collected frames, driven in headless Chromium (Selenium + Debian's chromedriver).

Frames come from a real ``--collect`` run of the shipped dogs-vs-cats model on the two-zone scene; the page
labels them into ``train/<class>/``, discards one, the downloaded ``.tar.gz`` is read back by ``train-model``'s
loader (``tests/converter/test_transfer.py`` runs ``retrain-model`` on such a folder and reads its report
through this page's ``/api/candidate``)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import secrets
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_app.model import default_model_dir
from tests.edge_app.helpers import edge_app, wait_until

pytestmark = pytest.mark.timeout(300)
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = secrets.token_urlsafe(12)


@pytest.fixture
def collected(tmp_path: Path, scene: Path) -> Path:
    root = tmp_path / "collected"
    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless",
                      "--zone", "left:0,0,0.5,1", "--zone", "right:0.5,0,0.5,1", "--collect", str(root),
                      "--collect-interval", "0.001", "--collect-min-gap", "0", timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list((root / "inbox").glob("*.jpg"))) == 4
    frame = cv2.imread(str(sorted((root / "inbox").glob("*.jpg"))[0]))
    cv2.imwrite(str(root / "inbox" / "dropped-in-by-hand.jpg"), cv2.flip(frame, 0))  # no prediction beside it
    return root


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port, yielded), as ``edge-app review`` serves it."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert wait_until(lambda: srv.started, 10)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def server(collected: Path) -> Iterator[str]:
    from edge_app.review import create_app

    labels = (default_model_dir("cats-vs-dogs") / "labels.txt").read_text().split()
    with serving(create_app(collected, TOKEN, labels)) as port:
        yield f"http://127.0.0.1:{port}/"


def call(port: int, method: str, path: str, body: object = None, *, host: str | None = None, origin: str | None = None) -> tuple[int, bytes]:
    """One request over real HTTP to 127.0.0.1:``port``, as the page's script sends it (JSON, ``X-Edge-App: 1``),
    with ``Host`` (and ``Origin``) forged when given: what a DNS-rebinding page's browser sends."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-Edge-App": "1", "Content-Type": "application/json"} if body is not None else {}
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """A collect folder with three real JPEGs (and their predictions) in its inbox, and ``sentinel.jpg`` beside the inbox."""
    root = tmp_path / "collected"
    (root / "inbox").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(root / "inbox" / f"{name}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (root / "inbox" / f"{name}.json").write_text(json.dumps({"label": "cat", "score": 0.4}))
    cv2.imwrite(str(root / "sentinel.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return root


def test_a_bad_name_in_a_batch_is_one_400_and_nothing_changes(inbox: Path) -> None:
    """``../sentinel.jpg`` was a 500 with a traceback (discard), and a batch mixing good and bad names was applied in
    part before the error: now the whole batch is checked first, for label and discard alike."""
    from edge_app.review import create_app

    with serving(create_app(inbox)) as port:
        for path, extra in (("/api/label", {"label": "cat"}), ("/api/discard", {})):
            code, body = call(port, "POST", path, {"images": ["a.jpg", "../sentinel.jpg", 7, "b.jpg", "x/../c.jpg"], **extra})
            assert sorted(p.name for p in (inbox / "inbox").iterdir()) == ["a.jpg", "a.json", "b.jpg", "b.json", "c.jpg", "c.json"], path
            assert (inbox / "sentinel.jpg").is_file() and not list((inbox / "train").rglob("*.jpg")), path
            assert code == 400, path
            error = json.loads(body)
            assert error["bad"] == ["../sentinel.jpg", 7, "x/../c.jpg"] and "'../sentinel.jpg', 7, 'x/../c.jpg'" in error["error"]
        code, body = call(port, "POST", "/api/discard", {"images": ["../sentinel.jpg"]})
        assert code == 400 and json.loads(body) == {"error": "bad image name(s), nothing was changed: '../sentinel.jpg'",
                                                   "bad": ["../sentinel.jpg"]}
        assert (inbox / "sentinel.jpg").is_file()
        code, body = call(port, "POST", "/api/label", {"images": ["a.jpg"], "label": "../x"})
        assert code == 400 and "bad class name" in json.loads(body)["error"]
        # a good batch still works, and a name done already (another tab) is skipped, not an error
        code, body = call(port, "POST", "/api/label", {"images": ["a.jpg", "a.jpg"], "label": "cat"})
        assert code == 200 and json.loads(body)["moved"] == ["a.jpg"] and (inbox / "train" / "cat" / "a.jpg").is_file()
        code, body = call(port, "POST", "/api/discard", {"images": ["a.jpg", "b.jpg"]})
        assert code == 200 and json.loads(body) == {"discarded": ["b.jpg"]}
        assert sorted(p.name for p in (inbox / "inbox").iterdir()) == ["c.jpg", "c.json"] and (inbox / "sentinel.jpg").is_file()


def test_a_forged_host_reaches_nothing_even_without_a_token(inbox: Path) -> None:
    """DNS rebinding: a page on evil.example re-resolves its name to this device; the browser then sends
    ``Host`` and ``Origin`` both ``evil.example:PORT``, which passed the cross-site check and deleted an image."""
    from edge_app.review import create_app

    with serving(create_app(inbox)) as port:
        evil = f"evil.example:{port}"
        code, body = call(port, "POST", "/api/discard", {"images": ["a.jpg"]}, host=evil, origin=f"http://{evil}")
        assert code == 400 and body == b"misdirected request: 'evil.example' is not a name of this server; add it with --host-name NAME to serve it\n"
        code, _ = call(port, "POST", "/api/label", {"images": ["b.jpg"], "label": "cat"}, host=evil, origin=f"http://{evil}")
        assert code == 400
        assert call(port, "GET", "/api/inbox", host=evil)[0] == 400  # nor can it read the inbox
        assert call(port, "GET", "/inbox/a.jpg", host=evil)[0] == 400
        assert sorted(p.name for p in (inbox / "inbox").glob("*.jpg")) == ["a.jpg", "b.jpg", "c.jpg"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", "127.0.0.1"):
            code, body = call(port, "GET", "/", host=host)
            assert code == 200 and b"<html" in body.lower(), host
            assert len(json.loads(call(port, "GET", "/api/inbox", host=host)[1])["items"]) == 3, host
        for host in ("evil.example", "127.0.0.1.evil.example", "localhost.", "[::2]", "a b", ""):
            assert call(port, "GET", "/", host=host)[0] == 400, host
        code, body = call(port, "POST", "/api/discard", {"images": ["a.jpg"]}, host=f"localhost:{port}", origin=f"http://localhost:{port}")
        assert code == 200 and json.loads(body) == {"discarded": ["a.jpg"]}
    with serving(create_app(inbox, host_names=["review.example", "*.lab.example"])) as port:  # --host-name
        for host in (f"review.example:{port}", "pi.lab.example", f"127.0.0.1:{port}"):
            assert call(port, "GET", "/api/inbox", host=host)[0] == 200, host
        for host in ("lab.example", "evil.example", "review.example.evil.example"):
            assert call(port, "GET", "/api/inbox", host=host)[0] == 400, host


def test_serving_beyond_loopback_without_a_token_warns(inbox: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from edge_app import review
    from edge_app.errors import ConfigError
    from edge_app.web import server as web_server

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(web_server, "serve", lambda app, host, port, **kw: served.append({"host": host, "port": port, **kw}))
    args = argparse.Namespace(folder=inbox, http="0.0.0.0:8081", token=None, model=None, host_name=["review.example"])
    with caplog.at_level(logging.INFO, logger="edge_app.review"):
        assert review.run(args) == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == ["the review page is served on every interface without a token: anyone who can reach this device can use it; "
                            "pass --token or serve 127.0.0.1 only"]
        caplog.clear()
        for http, token in (("127.0.0.1:8081", None), ("0.0.0.0:8081", "t0ken")):
            assert review.run(argparse.Namespace(**{**vars(args), "http": http, "token": token})) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert served[0] == {"host": "0.0.0.0", "port": 8081, "what": "the review page"}  # noqa: S104 - what --http asked for
    with pytest.raises(ConfigError, match="bad host name"):
        review.create_app(inbox, host_names=["*evil"])


def test_changes_need_the_token_and_the_same_site(server: str) -> None:
    import httpx

    body = {"images": ["x.jpg"], "label": "cat"}
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Edge-App": "1"}
    assert httpx.get(server + "api/inbox").status_code == 401
    assert httpx.post(server + "api/label", json=body, params={"token": TOKEN}, headers={"X-Edge-App": "1"}).status_code == 401
    assert httpx.post(server + "api/label", json=body, headers={**auth, "Origin": "http://evil.example"}).status_code == 403
    form = httpx.post(server + "api/label", data={"images": "x.jpg", "label": "cat"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert form.status_code == 403  # what a cross-site HTML form could send
    bad = httpx.post(server + "api/label", json={"images": ["../../etc/passwd"], "label": "cat"}, headers=auth)
    assert bad.status_code == 400 and "bad image name" in bad.json()["error"]
    assert httpx.post(server + "api/label", json={"images": [], "label": "../x"}, headers=auth).status_code == 400


@pytest.mark.skipif(CHROMEDRIVER is None or CHROMIUM is None, reason="chromium/chromedriver is not installed (apt-get install chromium chromium-driver)")
def test_label_in_the_browser_then_train_on_the_download(server: str, collected: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    shot = tmp_path / "review.png"
    try:
        driver.get(f"{server}?token={TOKEN}")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 5)
        wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                                 for img in d.find_elements(By.CSS_SELECTOR, ".card img")))
        captions = {c.get_attribute("data-image"): c.text for c in driver.find_elements(By.CSS_SELECTOR, ".card")}
        assert captions["dropped-in-by-hand.jpg"].startswith("none ?")  # no prediction: listed first

        def pick(predicate) -> list[str]:
            chosen = []
            for card in driver.find_elements(By.CSS_SELECTOR, ".card"):
                if predicate(card.text):
                    card.click()
                    chosen.append(card.get_attribute("data-image"))
            return chosen

        cats = pick(lambda t: t.startswith("cat "))
        assert len(cats) == 2 and driver.find_element(By.ID, "summary").text == "5 image(s) to review, 2 selected"
        driver.save_screenshot(str(shot))
        Select(driver.find_element(By.ID, "class-select")).select_by_visible_text("cat")
        driver.find_element(By.ID, "label-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 3)
        dogs = pick(lambda t: t.startswith("dog "))
        driver.find_element(By.ID, "new-class").send_keys("dog")  # typed: the same class as choosing it
        driver.find_element(By.ID, "label-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 1)
        pick(lambda t: True)
        driver.find_element(By.ID, "discard-btn").click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".card"))
        counts = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
                  for r in driver.find_elements(By.CSS_SELECTOR, "#counts-body tr")}
        assert counts == {"cat": "2", "dog": "2"}
        href = driver.find_element(By.ID, "download").get_attribute("href")
    finally:
        driver.quit()
    assert shot.stat().st_size > 10_000
    assert sorted(p.name for p in (collected / "train" / "cat").iterdir()) == sorted(cats)
    assert sorted(p.name for p in (collected / "train" / "dog").iterdir()) == sorted(dogs)
    assert not list((collected / "inbox").iterdir())  # prediction files went with their images

    import httpx

    archive = tmp_path / "dataset.tar.gz"
    archive.write_bytes(httpx.get(href, timeout=30).content)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted([f"train/cat/{c}" for c in cats] + [f"train/dog/{d}" for d in dogs])
    from converter.data.datasets import load_dataset

    ds = load_dataset(archive, "train", image_size=(96, 96))  # train-model's loader reads the download as it is
    assert ds.classes == ("cat", "dog") and len(ds) == 4
    from converter.cli.train import main as train_main

    out = tmp_path / "trained"  # and train-model trains on it (a quick edge CNN: the point is reading the download)
    assert train_main(["--data", str(archive), "--arch", "edge", "--image-size", "32", "--widths", "8,16,16", "--epochs", "1",
                       "--val-fraction", "0.5", "--out", str(out), "-q"]) == 0
    assert json.loads((out / "train_report.json").read_text())["classes"] == ["cat", "dog"]


