"""The web API as ``docs/API.md`` documents it: the route tables there are exactly what the application serves (methods
included), every documented route answers over real HTTP as its row says (token or not), and ``--collect DIR`` with
``--http`` serves the review page and API in the same edge-app process, on the same port, with the same token."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Mount, Route

from edge_app.deploy import ModelDesk
from edge_app.web import WebServer
from edge_app.web.app import create_app
from edge_app.web.hosts import AllowedHosts
from tests.edge_app.helpers import wait_until

pytestmark = pytest.mark.timeout(120)

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
LIVE = "Live view (`edge-app --http`)"
REVIEW = "Review (`edge-app --collect DIR --http`, or `edge-app review DIR`)"
WORKSTATION = "Workstation only (`edge-app review DIR`)"
MODELS = "Models (`edge-app --http`)"
ROW = re.compile(r"^\| (GET|POST) \| `([^`]+)` \| (yes|no) \|")
TOKEN = "t0ken-for-tests"  # noqa: S105 - a test server's token


def documented() -> dict[str, set[tuple[str, str, bool]]]:
    """The rows of each route table of docs/API.md, by section: {(method, path, needs token)}."""
    tables: dict[str, set[tuple[str, str, bool]]] = {}
    section = ""
    for line in API_MD.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif m := ROW.match(line):
            tables.setdefault(section, set()).add((m[1], m[2], m[3] == "yes"))
    return tables


def served(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route of ``app``; a mount of static files as ``/prefix/{file}``."""
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            routes.add(("GET", route.path + "/{file}"))
        elif isinstance(route, Route):
            routes |= {(m, route.path) for m in (route.methods or {"GET"}) if m != "HEAD"}
    return routes


def test_the_route_tables_are_exactly_what_is_served(tmp_path: Path) -> None:
    tables = documented()
    live, review, workstation, models = tables[LIVE], tables[REVIEW], tables[WORKSTATION], tables[MODELS]
    hosts = AllowedHosts("127.0.0.1")
    web = WebServer(port=0)
    combined = served(create_app(live=web, review=tmp_path, hosts=hosts))
    assert combined == {(m, p) for m, p, _ in live | review}
    desk = ModelDesk(None, tmp_path, reload=lambda timeout: {"ok": True}, running=lambda: None)
    assert served(create_app(live=web, review=tmp_path, models=desk, hosts=hosts)) == {(m, p) for m, p, _ in live | review | models}
    assert served(create_app(live=web, hosts=hosts)) == {(m, p) for m, p, _ in live}
    assert served(create_app(review=tmp_path, hosts=hosts)) == {(m, p) for m, p, _ in review | workstation}


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            return resp.status, resp.read(100), ctype  # a stream: its first bytes
        return resp.status, resp.read(), ctype
    finally:
        conn.close()


def test_every_documented_route_answers_as_documented(tmp_path: Path, frames_for_api) -> None:
    """Each row, over real HTTP with the token set: without it 401 (or served, where the row says no token), with it served."""
    (tmp_path / "inbox").mkdir()
    frame, result = frames_for_api
    import cv2

    cv2.imwrite(str(tmp_path / "inbox" / "a.jpg"), frame[:48, :64])
    (tmp_path / "candidate").mkdir()
    (tmp_path / "candidate" / "retrain_report.json").write_text('{"accuracy": 0.9}')
    example = {"{image}": "a.jpg", "{file}": "review.js"}
    with WebServer(port=0, token=TOKEN, reload=lambda timeout: {"ok": True, "model": "m"}, review=tmp_path, labels=["cat", "dog"]) as web:
        stop = threading.Event()
        feeder = threading.Thread(target=lambda: [web.write(frame, result) or stop.wait(0.05) for _ in iter(stop.is_set, True)], daemon=True)
        feeder.start()
        try:
            assert wait_until(lambda: web.health()[0], 5)
            rows = documented()
            for method, pattern, needs_token in sorted(rows[LIVE] | rows[REVIEW]):
                path = pattern
                for key, value in example.items():
                    path = path.replace(key, value)
                body, extra = None, {}
                if path == "/api/review/discard":  # last: it empties the inbox
                    continue
                if method == "POST" and path.startswith("/api/review/"):
                    body, extra = json.dumps({"images": ["gone.jpg"], "label": "cat"}).encode(), {"X-Edge-App": "1", "Content-Type": "application/json"}
                code, _, _ = call(web.port, method, path, extra, body)
                assert code == (401 if needs_token else 200), (method, path, code)
                code, data, ctype = call(web.port, method, path, {**extra, "Authorization": f"Bearer {TOKEN}"}, body)
                assert code == 200, (method, path, code, data[:200])
                if path.startswith("/api/") and not path.endswith((".tar.gz", ".jpg")):
                    assert ctype == "application/json", (path, ctype)
                    json.loads(data)
            code, data, _ = call(web.port, "POST", "/api/review/discard", {"X-Edge-App": "1", "Content-Type": "application/json",
                                                                            "Authorization": f"Bearer {TOKEN}"}, b'{"images": ["a.jpg"]}')
            assert (code, json.loads(data)) == (200, {"discarded": ["a.jpg"]})
            assert call(web.port, "GET", f"/review?token={TOKEN}")[0] == 200  # what a browser's address bar sends
        finally:
            stop.set()
            feeder.join()


def test_the_models_routes_answer_as_documented(tmp_path: Path, frames_for_api) -> None:
    """Each Models row over real HTTP with the token set: 401 without it; with it the page and overview are served and
    each change is refused with 409 and its reason (the app runs a shipped bundle, there is no candidate)."""
    frame, result = frames_for_api
    desk = ModelDesk(None, tmp_path, reload=lambda timeout: {"ok": True, "model": "m"}, running=lambda: "cifar10@0")
    json_post = {"X-Edge-App": "1", "Content-Type": "application/json"}
    with WebServer(port=0, token=TOKEN, models=desk) as web:
        web.write(frame, result)
        for method, path, needs_token in sorted(documented()[MODELS]):
            extra, body = (json_post, b"{}") if method == "POST" else ({}, None)
            assert call(web.port, method, path, extra, body)[0] == (401 if needs_token else 200), (method, path)
            code, data, ctype = call(web.port, method, path, {**extra, "Authorization": f"Bearer {TOKEN}"}, body)
            if method == "GET":
                assert code == 200, (path, code, data[:200])
                continue
            assert code == 409 and ctype == "application/json", (path, code, data[:200])
            assert json.loads(data)["ok"] is False and json.loads(data)["error"], data
        overview = json.loads(call(web.port, "GET", "/api/models", {"Authorization": f"Bearer {TOKEN}"})[1])
        assert overview["running"]["model"] == "cifar10@0" and "set model = DIR" in overview["deploy"]["why_not"]
        assert call(web.port, "POST", "/api/models/deploy", {"Authorization": f"Bearer {TOKEN}"}, b"{}")[0] in (403, 415)  # not JSON


@pytest.fixture(scope="module")
def frames_for_api(cifar10_val, default_model):
    from tests.edge_app.framekit import classify_frames

    return classify_frames(cifar10_val, default_model, [5], size=(640, 480))[0]


def test_collect_and_http_serve_the_review_page_in_the_same_process(tmp_path: Path, cifar10_val, write_video) -> None:
    """The real app on a real video with --collect DIR --http --http-token: the collected frames appear in
    /api/review/inbox on the live view's port, a label POST with the token moves them into DIR/train/<class>/, and the
    same request without the token, or from another site, changes nothing."""
    from edge_app.app import App
    from edge_app.config import load_config

    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:30], repeat=4)
    root = tmp_path / "collected"
    app = App(load_config(None, {"source": [str(video)], "headless": True, "stats_interval": 0.0, "loop": True, "realtime": True,
                                 "http": "127.0.0.1:0", "http_token": TOKEN, "collect": str(root), "collect_interval": 0.001,
                                 "collect_min_gap": 0.0}), handle_signals=False)
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(app.run()), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: app.web is not None and len(list((root / "inbox").glob("*.jpg"))) >= 3, 30)
        assert app.web is not None
        port, auth = app.web.port, {"Authorization": f"Bearer {TOKEN}"}
        assert call(port, "GET", "/api/review/inbox")[0] == 401
        code, data, _ = call(port, "GET", "/api/review/inbox", auth)
        inbox = json.loads(data)
        # the running model's labels are offered: the default ImageNet bundle's 1,000 ("tabby", not CIFAR-10's "cat")
        assert code == 200 and len(inbox["items"]) >= 3 and "tabby" in inbox["classes"] and len(inbox["classes"]) == 1000
        names = [item["image"] for item in inbox["items"][:2]]
        assert all((root / "inbox" / n).is_file() for n in names)
        code, data, ctype = call(port, "GET", f"/api/review/inbox/{names[0]}", auth)
        assert code == 200 and ctype == "image/jpeg" and data[:2] == b"\xff\xd8"
        change = {"X-Edge-App": "1", "Content-Type": "application/json"}
        body = json.dumps({"images": names, "label": "cat"}).encode()
        assert call(port, "POST", "/api/review/label", change, body)[0] == 401  # no token
        assert call(port, "POST", f"/api/review/label?token={TOKEN}", change, body)[0] == 401  # a change takes it only in the header
        assert call(port, "POST", "/api/review/label", {**change, **auth, "Origin": "http://evil.example"}, body)[0] == 403
        assert call(port, "POST", "/api/review/label", {**auth, "Content-Type": "text/plain"}, body)[0] == 403  # what a form could send
        assert not (root / "train" / "cat").exists()
        code, data, _ = call(port, "POST", "/api/review/label", {**change, **auth, "Origin": f"http://127.0.0.1:{port}"}, body)
        assert code == 200 and sorted(json.loads(data)["moved"]) == sorted(names)
        assert sorted(p.name for p in (root / "train" / "cat").iterdir()) == sorted(names)
        assert not any((root / "inbox" / n).exists() for n in names)
        # the same port still serves the live view, the page and health
        assert call(port, "GET", "/healthz")[0] == 200
        assert call(port, "GET", f"/?token={TOKEN}")[0] == 200 and call(port, "GET", f"/review?token={TOKEN}")[0] == 200
        assert call(port, "GET", "/review/static/review.js")[0] == 200
    finally:
        app.request_stop("test over")
        thread.join(10.0)
    assert box == [0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_browser_shows_the_review_page_at_review_on_the_live_views_port(tmp_path: Path) -> None:
    """The page's relative URLs (its script, style sheet, API and images) resolve under /review on the live view's port."""
    import cv2
    import numpy as np

    (tmp_path / "inbox").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "inbox" / f"{name}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (tmp_path / "inbox" / f"{name}.json").write_text(json.dumps({"label": "cat", "score": 0.4}))
    with WebServer(port=0, token=TOKEN, review=tmp_path, labels=["cat", "dog"]) as web:
        assert CHROMIUM is not None
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", f"{web.url}review?token={TOKEN}"]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    assert dom.count('class="card') == 2 and "2 image(s) to review, 0 selected" in dom, dom[-2000:]
    assert f'src="api/review/inbox/a.jpg?token={TOKEN}"' in dom and '<option value="dog">' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_browser_shows_how_the_running_bundle_was_scored_on_the_models_page(tmp_path: Path, repo_root: Path) -> None:
    """The shipped dogs-vs-cats bundle with the training score convert-model writes from its run's train_report.json (a
    200-photo carve): the models page shows the score, its 95 % interval and how it was obtained, over /api/models."""
    from converter.evaluation.cross_validation import training_score
    from edge_app.model import default_model_dir

    bundle = tmp_path / "model"
    shutil.copytree(default_model_dir("cats-vs-dogs"), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    score = training_score(json.loads((repo_root / "reports" / "cats-vs-dogs-model" / "train_report.json").read_text()))
    assert score is not None and score["scored_by"] == "validation carve" and score["images"] == 200
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "training_score": score}))
    desk = ModelDesk(bundle, tmp_path / "collect", reload=lambda timeout: {"ok": True}, running=lambda: "cats-vs-dogs@1")
    with WebServer(port=0, token=TOKEN, models=desk) as web:
        overview = json.loads(call(web.port, "GET", "/api/models", {"Authorization": f"Bearer {TOKEN}"})[1])
        assert overview["running"]["manifest"]["training_score"] == score
        assert CHROMIUM is not None
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", f"{web.url}models?token={TOKEN}"]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    lo, hi = (f"{v * 100:.1f} %" for v in score["ci95"])
    assert f"<dt>training score</dt><dd>98.5 % (95 % CI {lo} to {hi}) by validation carve on 200 images</dd>" in dom, dom[-3000:]
    assert f"<dt>scored by</dt><dd>{score['method']}</dd>" in dom
