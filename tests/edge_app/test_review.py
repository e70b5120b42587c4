"""The review page on real collected frames, driven in headless Chromium (Selenium + Debian's chromedriver).

Frames come from a real ``--collect`` run of the shipped dogs-vs-cats model on the two-zone scene; the page
labels them into ``train/<class>/``, discards one, the downloaded ``.tar.gz`` is read back by ``train-model``'s
loader (``tests/converter/test_transfer.py`` runs ``retrain-model`` on such a folder and reads its report
through this page's ``/api/candidate``)."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
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


@pytest.fixture
def server(collected: Path) -> Iterator[str]:
    import uvicorn

    from edge_app.review import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    labels = (default_model_dir("cats-vs-dogs") / "labels.txt").read_text().split()
    srv = uvicorn.Server(uvicorn.Config(create_app(collected, TOKEN, labels), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert wait_until(lambda: srv.started, 10)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


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
    from converter.data import load_dataset

    ds = load_dataset(archive, "train", image_size=(96, 96))  # train-model's loader reads the download as it is
    assert ds.classes == ("cat", "dog") and len(ds) == 4
    from converter.train import main as train_main

    out = tmp_path / "trained"  # and train-model trains on it (a quick edge CNN: the point is reading the download)
    assert train_main(["--data", str(archive), "--arch", "edge", "--image-size", "32", "--widths", "8,16,16", "--epochs", "1",
                       "--val-fraction", "0.5", "--out", str(out), "-q"]) == 0
    assert json.loads((out / "train_report.json").read_text())["classes"] == ["cat", "dog"]


