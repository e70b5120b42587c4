"""The own-classes loop on one port, driven in headless Chromium against the real ``edge-app`` on a real video: the live
page shows frames, the frames it collected appear on the review page and are labelled into two classes, a candidate
bundle is deployed from the models page while frames keep flowing (the log's ``model`` field changes to it), and
Rollback brings the old model back. The candidate is the shipped dogs-vs-cats bundle with a report, placed where
``retrain-model`` writes it (tests/edge_app/test_deploy.py runs a real ``retrain-model`` through the same back end).

With ``EDGE_APP_SCREENSHOTS=DIR`` the three pages are also saved there (the README's screenshots)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.deploy import CANDIDATE, REPORT
from edge_app.model import default_model_dir, load_labels
from tests.edge_app.helpers import env, read_jsonl, wait_until

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CARDS = "return [...document.querySelectorAll('.card')].map(c => c.dataset.image)"
TOKEN = "whole-loop-t0ken"  # noqa: S105 - a test server's token

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(CHROMEDRIVER is None or CHROMIUM is None, reason="chromium/chromedriver is not installed (apt-get install chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_review_deploy_and_rollback_in_the_browser_on_one_port(tmp_path: Path, cifar10_val, write_video) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    scene = write_video(tmp_path / "scene.avi", cifar10_val.x[::250][:20], repeat=10)  # 20 real photos, two of each class, 1/3 s each
    port = _free_port()
    collect, log, model = tmp_path / "collect", tmp_path / "results.jsonl", tmp_path / "model"
    cmd = [sys.executable, "-m", "edge_app", "--source", str(scene), "--loop", "--realtime", "--headless",
           "--model", str(model), "--model-seed", "imagenet", "--log", str(log), "--collect", str(collect),
           "--collect-interval", "0.5", "--collect-min-gap", "0.2", "--collect-below", "0",
           "--http", f"127.0.0.1:{port}", "--http-token", TOKEN, "--stats-interval", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    shots = Path(os.environ.get("EDGE_APP_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,800", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"):
        opts.add_argument(arg)
    driver = None
    try:
        assert wait_until(lambda: (log.exists() and len(read_jsonl(log)) > 5) or proc.poll() is not None, 60), "no frames"
        assert proc.poll() is None
        first = read_jsonl(log)[-1]["model"]
        assert first.startswith("model@")  # the device's own folder, seeded from the shipped (default) ImageNet bundle
        base = f"http://127.0.0.1:{port}"
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
        wait = WebDriverWait(driver, 30)

        # live: the stream shows frames, the caption the current top class
        driver.get(f"{base}/?token={TOKEN}")
        wait.until(lambda d: d.execute_script("const i = document.getElementById('stream'); return i.complete && i.naturalWidth > 0"))
        wait.until(lambda d: d.find_element(By.ID, "top").text.strip())
        driver.save_screenshot(str(shots / "live.png"))

        # review: the collected frames are there; two selections become two classes
        assert wait_until(lambda: len(list((collect / "inbox").glob("*.jpg"))) >= 4, 30)
        driver.find_element(By.LINK_TEXT, "Review").click()
        wait.until(lambda d: len(d.execute_script(CARDS)) >= 4)
        wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(str(shots / "review.png"))
        for label in ("door-open", "door-closed"):  # the inbox keeps filling meanwhile: the page refreshes itself
            chosen = driver.execute_script(CARDS)[:2]
            for name in chosen:  # by name: the grid is redrawn as new frames arrive (selections are kept by name)
                driver.execute_script("document.querySelector(`.card[data-image='${arguments[0]}']`).click()", name)
            driver.find_element(By.ID, "new-class").clear()
            driver.find_element(By.ID, "new-class").send_keys(label)
            driver.find_element(By.ID, "label-btn").click()
            wait.until(lambda d, chosen=chosen: not set(d.execute_script(CARDS)) & set(chosen))
        counts = {d.name: len(list(d.iterdir())) for d in (collect / "train").iterdir()}
        assert counts.get("door-open") == 2 and counts.get("door-closed") == 2, counts
        # the class menu: the training set's own classes first, the running model's 1,000 ImageNet labels after them
        own = "return [...document.querySelectorAll('#class-select > option')].map(o => o.value)"
        wait.until(lambda d: d.execute_script(own) == ["door-closed", "door-open"])
        offered = driver.execute_script("return [...document.querySelectorAll('#class-select optgroup option')].map(o => o.value)")
        assert len(offered) == 1000 and "tabby" in offered and "door-open" not in offered

        # the candidate retrain-model would write for them
        shutil.copytree(default_model_dir("cats-vs-dogs"), collect / CANDIDATE)
        report = {"classes": ["cat", "dog"], "val_images": 4, "val_accuracy": {"float": 1.0, "int8": 1.0},
                  "recall": {"cat": 1.0, "dog": 1.0}, "confusion": [[2, 0], [0, 2]], "train_images": {"cat": 8, "dog": 8},
                  "current": {"disagreement": 1.0, "images": 4, "labels": load_labels(default_model_dir("imagenet") / "labels.txt"),
                              "new_classes": ["cat", "dog"]}}  # retrain-model --current with the seeded ImageNet bundle running
        (collect / CANDIDATE / REPORT).write_text(json.dumps(report))

        # models: deploy it while frames keep flowing, then roll back
        driver.find_element(By.LINK_TEXT, "Models").click()
        wait.until(lambda d: d.find_element(By.ID, "deploy").is_enabled() and "cat, dog" in d.find_element(By.ID, "candidate").text)
        assert driver.find_elements(By.CSS_SELECTOR, "#confusion tr")
        driver.save_screenshot(str(shots / "models.png"))
        driver.find_element(By.ID, "deploy").click()
        wait.until(lambda d: "now running" in d.find_element(By.ID, "message").text)
        assert wait_until(lambda: read_jsonl(log)[-1]["model"] != first, 20)
        deployed = read_jsonl(log)[-1]["model"]
        assert {t["label"] for t in read_jsonl(log)[-1]["top"]} <= {"cat", "dog"}
        wait.until(lambda d: d.find_element(By.ID, "rollback").is_enabled())
        driver.find_element(By.ID, "rollback").click()
        wait.until(lambda d: "now running " + first in d.find_element(By.ID, "message").text)
        assert wait_until(lambda: read_jsonl(log)[-1]["model"] == first, 20)
        # the review page's word on the candidate: no class in common with the running 1,000-class model
        driver.find_element(By.LINK_TEXT, "Review").click()
        wait.until(lambda d: "shares no class with the current model (its 1000 classes)" in d.find_element(By.ID, "candidate-text").text)
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    records = read_jsonl(log)
    models = [r["model"] for r in records]
    assert deployed in models and models[-1] == first
    frames = [r["frame"] for r in records]
    assert all(b > a for a, b in itertools.pairwise(frames))  # one source, never reopened: only newest-frame-wins drops
    assert all((shots / f"{page}.png").stat().st_size > 10_000 for page in ("live", "review", "models"))
