"""docs/review.png: the review page in headless Chromium, over a synthetic inbox.

The README's screenshot must not show dataset photos (they may not be copied into the repository), so this
fills an inbox with drawn frames of a garage door (open, closed, ajar at night) and predictions beside them, then
photographs the page with two cards selected. Needs the [review] extra, selenium, chromium and chromedriver.

    .venv/bin/python benchmarks/review_screenshot.py docs/review.png
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from edge_app.review import create_app


def door(closed: float, night: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((240, 240, 3), (60, 70, 80) if night else (170, 190, 200), np.uint8)
    cv2.rectangle(img, (40, 60), (200, 230), (90, 90, 95), -1)  # the opening
    drop = int(170 * closed)  # how far down the door has come
    cv2.rectangle(img, (40, 60), (200, 60 + drop), (200, 200, 190) if not night else (110, 110, 105), -1)  # the door
    for y in range(70, 60 + drop, 24):
        cv2.line(img, (40, y), (200, y), (150, 150, 140), 2)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def main(out: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="review-shot-"))
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    cases = [(1.0, False, "closed", 0.41), (0.0, False, "open", 0.97), (0.9, True, "closed", 0.55), (0.4, False, "open", 0.62),
             (0.0, True, "open", 0.88), (1.0, True, "closed", 0.93), (0.6, True, "open", 0.47), (1.0, False, "closed", 0.99)]
    for i, (frac, night, label, score) in enumerate(cases):
        name = f"20261202-1800{i:02d}-000-f{i * 30}-door"
        cv2.imwrite(str(inbox / f"{name}.jpg"), door(frac, night, i))
        (inbox / f"{name}.json").write_text(json.dumps({"label": label, "score": score, "zone": "door", "reasons": ["unsure"]}))
    (root / "train" / "open").mkdir(parents=True)
    (root / "train" / "closed").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "train" / "open" / f"o{i}.jpg"), door(0.0, False, 100 + i))
        cv2.imwrite(str(root / "train" / "closed" / f"c{i}.jpg"), door(1.0, False, 200 + i))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(root, None, ["closed", "open"]), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,720", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == len(cases))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        cards[0].click()
        cards[2].click()
        time.sleep(0.5)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.should_exit = True
        shutil.rmtree(root)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/review.png"))
