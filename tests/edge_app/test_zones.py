"""Zones and debounced states on a real video, through the real app; MQTT retained states on the real Mosquitto.

The scene: a 640x480 MJPG video whose left half shows a cat photo and right half a dog photo for 30 frames,
then the other way round for 30 frames, classified by the shipped dogs-vs-cats model (real photos of the
archive's test split, the ones it is sure about, so the scene is unambiguous)."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from edge_app.errors import ConfigError
from edge_app.model import default_model_dir
from edge_app.zones import Debouncer, parse_zone
from tests.edge_app.conftest import HALF
from tests.edge_app.helpers import edge_app, one_error_line, read_jsonl

pytestmark = pytest.mark.timeout(180)


def test_zones_in_fractions_and_pixels() -> None:
    door = parse_zone("door:0.5,0,0.5,1")
    assert door.fractional and door.box(480, 640) == (320, 0, 640, 480)
    gate = parse_zone("gate:10,20,100,50")
    assert not gate.fractional and gate.box(480, 640) == (10, 20, 110, 70)
    assert gate.crop(np.zeros((480, 640, 3), np.uint8)).shape == (50, 100, 3)
    assert parse_zone("big:600,400,200,200").box(480, 640) == (600, 400, 640, 480)  # clipped to the frame ...
    assert not parse_zone("big:600,400,200,200").fits(480, 640)  # ... but it does not fit it
    assert gate.fits(480, 640) and parse_zone("edge:540,380,100,100").fits(480, 640)


def test_a_pixel_zone_outside_the_frame_is_an_error_naming_it(tmp_path, scene) -> None:
    """It used to become the whole frame silently: exit 0, the whole frame's scores reported as ``door``."""
    log = tmp_path / "zones.jsonl"
    result = edge_app("--source", str(scene), "--headless", "--zone", "door:700,10,100,100", "--zone", "ok:0,0,0.5,1",
                      "--log", str(log), timeout=120)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "door:700,10,100,100" in line and "640x480" in line and "ok:" not in line, line
    assert not log.exists() or read_jsonl(log) == []  # nothing classified against the wrong pixels
    partly = edge_app("--source", str(scene), "--headless", "--zone", "door:600,400,100,100", "--max-frames", "2")
    assert partly.returncode == 3 and "does not fit the 640x480 frame" in one_error_line(partly)
    inside = edge_app("--source", str(scene), "--headless", "--zone", "door:540,380,100,100", "--max-frames", "2", "--log", str(log),
                      "--threshold", "0")  # every score: this corner is classified (ImageNet's own 0.1 may report nothing there)
    assert inside.returncode == 0, inside.stderr
    assert read_jsonl(log)[0]["zones"]["door"]["top"]


@pytest.mark.parametrize(("text", "message"), [
    ("0.1,0.1,0.5,0.5", "has no name"),
    ("door:0.1,0.1,0.5", "exactly four numbers"),
    ("door:a,b,c,d", "must be numbers"),
    ("door:0.6,0,0.5,1", "reaches outside the frame"),
    ("door:10.5,0,100,100", "whole numbers"),
    ("my door:0,0,1,1", "letters, digits"),
])  # fmt: skip
def test_bad_zones_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_zone(text)


def test_debounce_counts_consecutive_agreeing_results() -> None:
    d = Debouncer(3)
    seq = ["cat", "cat", "dog", "cat", "cat", "cat", None, "dog", "dog", "dog"]
    changes = [d.update(label, float(t)) for t, label in enumerate(seq)]
    assert changes == [False, False, False, False, False, True, False, False, False, True]
    assert d.state == "dog" and d.dwell(12.0) == 3.0


def test_zone_flags_are_checked_up_front(tmp_path) -> None:
    twice = edge_app("--source", "x.avi", "--headless", "--zone", "a:0,0,0.5,1", "--zone", "a:0.5,0,0.5,1", "--check-config")
    assert twice.returncode == 3 and "zone name(s) used twice: a" in one_error_line(twice)
    bad = tmp_path / "bad.toml"
    bad.write_text('zone = "door:0,0,2"\n')
    result = edge_app("--config", str(bad), "--check-config")
    assert result.returncode == 3 and "zone 'door:0,0,2'" in one_error_line(result)


def test_each_zone_changes_state_after_debounce_frames(tmp_path, scene) -> None:
    log, table = tmp_path / "zones.jsonl", tmp_path / "zones.csv"
    args = ["--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless",
            "--zone", "left:0,0,0.5,1", "--zone", "right:320,0,320,480", "--debounce", "3"]
    result = edge_app(*args, "--log", str(log), timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(log)
    assert [r["frame"] for r in records] == list(range(2 * HALF))
    left = [r["zones"]["left"] for r in records]
    right = [r["zones"]["right"] for r in records]
    assert [z["state"] for z in left[:2]] == [None, None]  # not yet 3 agreeing results
    assert [i for i, z in enumerate(left) if z["state_changed"]] == [2, HALF + 2]
    assert left[2]["state"] == "cat" and left[HALF + 1]["state"] == "cat" and left[-1]["state"] == "dog"
    assert right[2]["state"] == "dog" and right[-1]["state"] == "cat"
    assert left[HALF + 1]["dwell_s"] >= left[3]["dwell_s"] >= 0 and left[HALF + 2]["dwell_s"] == 0
    assert all(r["top"] == r["zones"]["left"]["top"] for r in records)  # the first zone is the record's top
    assert edge_app(*args, "--log", str(table), timeout=120).returncode == 0
    rows = list(csv.DictReader(table.open()))
    assert rows[-1]["state"] == "left=dog|right=cat" and rows[0]["state"] == "left=|right="


def test_whole_frame_debounce_without_zones(tmp_path, scene) -> None:
    log = tmp_path / "frame.jsonl"
    # the whole frame holds a cat beside a dog: the bundle's own threshold (0.7) rightly reports nothing; 0 reports every frame
    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless", "--debounce", "5",
                      "--log", str(log), "--threshold", "0", timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(log)
    assert "zones" not in records[0] and records[0]["state"] is None and records[4]["state"] is not None
    assert sum(r["state_changed"] for r in records) >= 1
    plain = tmp_path / "plain.jsonl"
    assert edge_app("--source", str(scene), "--headless", "--max-frames", "3", "--log", str(plain)).returncode == 0
    assert "state" not in read_jsonl(plain)[0]  # without --debounce and --zone: records as before


def test_zone_boxes_are_drawn_on_snapshots(tmp_path, scene) -> None:
    shots = tmp_path / "shots"
    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless", "--max-frames", "3",
                      "--zone", "left:0,0,0.5,1", "--snapshots", str(shots), timeout=60)
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(sorted(shots.glob("*.jpg"))[0]))
    assert image is not None
    green = (np.abs(image.astype(int) - (80, 200, 60)).sum(axis=2) < 60)
    h, w = green.shape
    # the box's right edge runs down the middle of the frame
    assert green[h // 4 : 3 * h // 4, w // 2 - 3 : w // 2 + 1].mean(axis=0).max() > 0.8


@pytest.fixture
def mosquitto_broker(tmp_path):
    from tests.edge_app.test_mqtt import Broker

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def test_zone_states_are_retained_on_mqtt(tmp_path, scene, mosquitto_broker) -> None:
    from tests.edge_app.test_mqtt import Listener

    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless",
                      "--zone", "left:0,0,0.5,1", "--zone", "right:0.5,0,0.5,1", "--debounce", "3",
                      "--mqtt", mosquitto_broker.url, "--mqtt-device", "garage", timeout=120)
    assert result.returncode == 0, result.stderr
    # a subscriber that connects after the run (as Home Assistant after a restart) gets the final states
    late = Listener(mosquitto_broker.port)
    try:
        assert late.wait(lambda: late.on("edge-app/garage/state/right"), 10)
        assert late.on("edge-app/garage/state/left")[-1].payload == "dog" and late.on("edge-app/garage/state/left")[-1].retain
        assert late.on("edge-app/garage/state/right")[-1].payload == "cat"
        config = json.loads(late.on("homeassistant/sensor/garage/state_left/config")[-1].payload)
        assert config["state_topic"] == "edge-app/garage/state/left" and config["options"] == ["cat", "dog"]
    finally:
        late.close()


def test_collect_saves_zone_crops_and_skips_near_duplicates(tmp_path, scene) -> None:
    """Every frame is a candidate (interval ~0, no gap): only the first view of each scene per zone is kept."""
    collect = tmp_path / "collected"
    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless",
                      "--zone", "left:0,0,0.5,1", "--zone", "right:0.5,0,0.5,1", "--collect", str(collect),
                      "--collect-interval", "0.001", "--collect-min-gap", "0", timeout=120)
    assert result.returncode == 0, result.stderr
    metas = sorted((json.loads(p.read_text()) for p in (collect / "inbox").glob("*.json")), key=lambda m: (m["zone"], m["frame"]))
    assert [(m["zone"], m["frame"]) for m in metas] == [("left", 0), ("left", HALF), ("right", 0), ("right", HALF)]
    assert [m["label"] for m in metas] == ["cat", "dog", "dog", "cat"] and all(0.5 < m["score"] <= 1 for m in metas)
    crop = cv2.imread(str(collect / "inbox" / metas[0]["image"]))
    assert crop is not None and crop.shape[:2] == (480, 320)  # the zone, not the frame
    assert "saved 4 frame(s)" in result.stderr and "skipped 116 near-duplicate(s)" in result.stderr, result.stderr[-300:]
    assert (collect / "train").is_dir()


def test_collect_pauses_when_the_inbox_is_full(tmp_path, scene) -> None:
    collect = tmp_path / "collected"
    result = edge_app("--model", str(default_model_dir("cats-vs-dogs")), "--source", str(scene), "--headless",
                      "--zone", "left:0,0,0.5,1", "--collect", str(collect), "--collect-interval", "0.001", "--collect-min-gap", "0",
                      "--collect-max-files", "1",
                      timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list((collect / "inbox").glob("*.jpg"))) == 1 and "is full (1 images" in result.stderr
