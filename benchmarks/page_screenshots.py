"""docs/images/{live,review,models}.png: the three pages of one edge-app on one port, in headless Chromium.

The README's screenshots must not show dataset photos (they may not be copied into the repository), so the camera
is a synthetic video of a garage door (drawn frames: open, closing, closed, by day and night). The script runs the
whole loop for real: ``edge-app`` with ``--collect`` and ``--http`` on that video (its model folder seeded from the
shipped cifar10 bundle), the live page, the review page with the collected frames, the frames labelled ``open`` and
``closed`` through the review API, ``retrain-model`` started from the models page's API (needs TensorFlow: the
workstation extras), and the models page with the candidate's report. Needs chromium and chromedriver.

    .venv/bin/python benchmarks/page_screenshots.py docs/images
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review_screenshot import door

TOKEN = "change-me"  # noqa: S105 - the README's example token
CARDS = "return [...document.querySelectorAll('.card')].map(c => c.dataset.image)"


def closed_at(frame: int) -> float:
    """How far the door is down at ``frame`` of the video: open, closing, closed, opening, each 2 s at 30 fps."""
    phase = (frame // 60) % 4
    step = (frame % 60) / 60
    return [0.0, step, 1.0, 1.0 - step][phase]


def make_video(path: Path, frames: int = 480) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(frames):
        night = (i // 240) % 2 == 1
        img = door(closed_at(i), night, i).astype(np.int16) + int(45 * np.sin(i / 23))  # the light changes through the day
        if (i // 90) % 3 == 1:  # a car parked in front now and then
            cv2.rectangle(img, (150, 170), (235, 225), (40, 40, 160 + (i % 60)), -1)
        writer.write(cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (640, 480), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


def api(port: int, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Edge-App": "1", "Content-Type": "application/json"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=None if body is None else json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="page-shots-"))
    video = make_video(root / "garage.avi")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    collect = root / "collect"
    app = subprocess.Popen([sys.executable, "-m", "edge_app", "--source", str(video), "--loop", "--realtime", "--headless",
                            "--model", str(root / "model"), "--model-seed", "cifar10", "--collect", str(collect),
                            "--collect-interval", "0.3", "--collect-min-gap", "0.3", "--collect-below", "0",
                            "--http", f"127.0.0.1:{port}", "--http-token", TOKEN, "-q"])
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,760", "--hide-scrollbars",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
    wait = WebDriverWait(driver, 60)
    try:
        deadline = time.monotonic() + 60
        while len(list((collect / "inbox").glob("*.jpg"))) < 16 and time.monotonic() < deadline:
            time.sleep(0.5)
        driver.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
        wait.until(lambda d: d.execute_script("const i = document.getElementById('stream'); return i.complete && i.naturalWidth > 0"))
        time.sleep(1.0)
        driver.save_screenshot(str(out / "live.png"))
        driver.get(f"http://127.0.0.1:{port}/review?token={TOKEN}")
        wait.until(lambda d: len(d.execute_script(CARDS)) >= 12)
        wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
        for name in driver.execute_script(CARDS)[:2]:
            driver.execute_script("document.querySelector(`.card[data-image='${arguments[0]}']`).click()", name)
        time.sleep(0.5)
        driver.save_screenshot(str(out / "review.png"))
        # label what was collected by what the drawn door shows (the frame number in each prediction file)
        by_label: dict[str, list[str]] = {"open": [], "closed": []}
        for meta in sorted((collect / "inbox").glob("*.json")):
            info = json.loads(meta.read_text())
            frac = closed_at(int(info["frame"]) % 480)
            if frac in (0.0, 1.0) or abs(frac - 0.5) > 0.3:
                by_label["closed" if frac > 0.5 else "open"].append(info["image"])
        for label, names in by_label.items():
            api(port, "/api/review/label", {"images": names, "label": label})
        api(port, "/api/models/retrain", {})
        while True:
            job = api(port, "/api/models")["retrain"]["job"]  # type: ignore[index]
            if job["state"] != "running":  # type: ignore[index]
                break
            time.sleep(2)
        driver.get(f"http://127.0.0.1:{port}/models?token={TOKEN}")
        wait.until(lambda d: "open" in d.find_element(By.ID, "candidate").text)
        time.sleep(0.5)
        driver.save_screenshot(str(out / "models.png"))
    finally:
        driver.quit()
        app.send_signal(signal.SIGTERM)
        app.wait(30)
        shutil.rmtree(root, ignore_errors=True)
    print(*(out / f"{p}.png" for p in ("live", "review", "models")))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
