"""MqttSink against a real Mosquitto broker on a free loopback port, watched by a real paho subscriber,
fed real results (the shipped model on CIFAR-10 validation images): discovery, availability,
classification and status messages, the last will on a killed process, a broker restart mid-run,
the retained states published again after a broker without persistence restarts (through the app on a
real video), the stopped status of a clean close, a full queue, and a wrong password."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest

from converter.data.datasets import Dataset
from edge_app.app import App
from edge_app.config import load_config
from edge_app.errors import ConfigError, ExitCode
from edge_app.model import Classifier, default_model_dir, resolve_model
from edge_app.mqtt import BrokerURL, MqttSink
from edge_app.outputs import FrameResult
from tests.edge_app.framekit import classify_frames
from tests.edge_app.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)"),
]
STATUS = {"model": "cifar10", "source": "cam0", "fps": 21.0, "frames": 10, "dropped": 1, "reconnects": 0, "uptime_s": 4.0}
FAST: dict[str, Any] = {"reconnect_delay_s": (1.0, 2.0), "keepalive_s": 5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A real Mosquitto on 127.0.0.1:``port`` with its own config (by default persistence on, so sessions and
    retained messages survive restarts; without, a restart forgets them, as a stock broker does)."""

    def __init__(self, folder: Path, extra: str = "", persistence: bool = True) -> None:
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'false' if 'password_file' in extra else 'true'}\n"
            + (f"persistence true\npersistence_location {folder}/\n" if persistence else "persistence false\n")
            + f"user {getpass.getuser()}\n"  # as root, mosquitto would otherwise switch to a user who cannot read this folder
            + f"log_dest stderr\n{extra}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=(self.folder / "log.txt").open("ab"))
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, (self.folder / "log.txt").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # mosquitto saves its persistence file on SIGTERM
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """Kill it as a power cut would: no goodbye, nothing saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass
class Received:
    topic: str
    payload: str
    retain: bool
    dup: bool = False  # a QoS 1 redelivery

    def json(self) -> Any:
        return json.loads(self.payload)


class Listener:
    """A paho subscriber to ``#``; with ``session`` it keeps a persistent session (QoS 1 backlog across restarts)."""

    def __init__(self, port: int, session: str | None = None, auth: tuple[str, str] | None = None, ca: Path | None = None) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=session or "", clean_session=session is None
        )
        self.client.reconnect_delay_set(1, 1)
        if auth:
            self.client.username_pw_set(*auth)
        if ca:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, msg.payload.decode(), bool(msg.retain), bool(msg.dup)))

    def on(self, topic: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        return wait_until(condition, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def results(cifar10_val: Dataset, default_model: Path) -> list[FrameResult]:
    """Real results for 40 validation images taken in runs of 4 (so labels both hold and change)."""
    picks = [i for start in range(0, len(cifar10_val), len(cifar10_val) // 10) for i in range(start, start + 4)][:40]
    out = [r for _, r in classify_frames(cifar10_val, default_model, picks, size=(64, 64))]
    assert 3 < sum(r.changed for r in out) < len(out)
    return out


@pytest.fixture(scope="module")
def labels(default_model: Path) -> list[str]:
    return Classifier(resolve_model(default_model)).labels


NO_PIXELS = np.empty((0, 0, 3), np.uint8)  # an MQTT sink never looks at the pixels


def test_broker_urls() -> None:
    u = BrokerURL.parse("mqtts://user:p%40ss@broker.local")
    assert (u.host, u.port, u.username, u.password, u.tls, u.transport) == ("broker.local", 8883, "user", "p@ss", True, "tcp")
    assert u.redacted() == "mqtts://user:***@broker.local:8883"
    assert BrokerURL.parse("mqtt://10.0.0.2").port == 1883
    w = BrokerURL.parse("wss://h:9001/ws")
    assert (w.transport, w.tls, w.path, w.port) == ("websockets", True, "/ws", 9001)
    bad_urls = [
        ("http://h", "unknown scheme"), ("mqtt://", "no host"), ("mqtt://h:99999", "out of range"), ("mqtt://h:0", "port 0"), ("h:1883", "unknown scheme"),
    ]  # fmt: skip
    for bad, why in bad_urls:
        with pytest.raises(ConfigError) as info:
            MqttSink(bad)
        message = str(info.value)
        assert message.startswith(f"bad MQTT broker URL {bad!r}: ") and why in message and "\n" not in message
        assert info.value.exit_code == ExitCode.CONFIG
    with pytest.raises(ConfigError, match="every_n"):
        MqttSink("mqtt://h", every_n=-1)
    with pytest.raises(ConfigError, match="prefix"):
        MqttSink("mqtt://h", prefix="a/#")


def test_discovery_availability_status_and_changes(broker: Broker, results: list[FrameResult], labels: list[str]) -> None:
    listener = Listener(broker.port)
    sink = MqttSink(broker.url, device="test cam", labels=labels, status=lambda: dict(STATUS), status_interval_s=0.5, model="cifar10", **FAST)
    try:
        base = "edge-app/test_cam"
        assert listener.wait(lambda: sink.connected)
        assert listener.wait(lambda: bool(listener.on(f"{base}/availability")))
        for r in results:
            sink.write(NO_PIXELS, r)
        changed = [r for r in results if r.changed]
        topic = f"{base}/classification"
        assert listener.wait(lambda: len(listener.on(topic)) == len(changed))
        got = [m.json() for m in listener.on(topic)]
        assert [g["frame"] for g in got] == [r.index for r in changed]
        assert [g["label"] for g in got] == [r.label for r in changed]
        assert got[0]["score"] == pytest.approx(changed[0].score, abs=1e-4)
        assert got[0]["top"] == changed[0].to_json_dict()["top"] and got[0]["device"] == "test_cam"

        assert [m.payload for m in listener.on(f"{base}/availability")] == ["online"]
        config = listener.on("homeassistant/sensor/test_cam/label/config")[0].json()
        assert config["state_topic"] == topic and config["availability_topic"] == f"{base}/availability"
        assert config["unique_id"] == "test_cam_label" and config["value_template"] == "{{ value_json.label or 'none' }}"
        assert config["device_class"] == "enum" and config["options"] == [*labels, "none"]
        assert config["device"]["identifiers"] == ["edge-app-test_cam"] and config["device"]["model"] == "cifar10"
        score = listener.on("homeassistant/sensor/test_cam/score/config")[0].json()
        assert score["unit_of_measurement"] == "%" and score["state_topic"] == topic

        assert listener.wait(lambda: len(listener.on(f"{base}/status")) >= 2, 5)  # every status_interval_s
        status = listener.on(f"{base}/status")[-1].json()
        assert {k: status[k] for k in STATUS} == STATUS and status["mqtt"]["dropped"] == 0

        # A subscriber arriving later gets the retained discovery, availability and latest label at once.
        late = Listener(broker.port)
        assert late.wait(lambda: len(late.on(topic)) == 1 and bool(late.on("homeassistant/sensor/test_cam/label/config")))
        assert late.on(topic)[0].retain and late.on(topic)[0].json()["frame"] == changed[-1].index
        assert late.on(f"{base}/availability")[0].payload == "online"
        late.close()
    finally:
        sink.close()
    assert listener.wait(lambda: [m.payload for m in listener.on(f"{base}/availability")] == ["online", "offline"])
    listener.close()


def test_every_n_frames(broker: Broker, results: list[FrameResult]) -> None:
    listener = Listener(broker.port)
    sink = MqttSink(broker.url, device="n", prefix="site/a", every_n=5, **FAST)
    try:
        for r in results:
            sink.write(NO_PIXELS, r)
        expected = [r.index for n, r in enumerate(results, 1) if r.changed or n % 5 == 0]
        topic = "site/a/n/classification"
        assert listener.wait(lambda: len(listener.on(topic)) == len(expected))
        assert [m.json()["frame"] for m in listener.on(topic)] == expected
    finally:
        sink.close()
        listener.close()


SINK_PROCESS = """
import sys, time
from edge_app.mqtt import MqttSink
sink = MqttSink(sys.argv[1], device="doomed", keepalive_s=5)
while not sink.connected:
    time.sleep(0.02)
time.sleep(0.3)
print("ready", flush=True)
time.sleep(60)
"""


def test_last_will_marks_a_killed_app_offline(broker: Broker) -> None:
    listener = Listener(broker.port)
    proc = subprocess.Popen([sys.executable, "-c", SINK_PROCESS, broker.url], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        topic = "edge-app/doomed/availability"
        assert listener.wait(lambda: [m.payload for m in listener.on(topic)] == ["online"])
        os.kill(proc.pid, signal.SIGKILL)  # no close(), no goodbye: only the broker's last will can tell
        proc.wait()
        assert listener.wait(lambda: [m.payload for m in listener.on(topic)] == ["online", "offline"], 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    late = Listener(broker.port)
    assert late.wait(lambda: [m.payload for m in late.on(topic)] == ["offline"])  # retained
    late.close()
    listener.close()


def test_broker_restart_mid_run(broker: Broker, results: list[FrameResult]) -> None:
    listener = Listener(broker.port, session="watcher")  # persistent session: its QoS 1 backlog survives the restart
    sink = MqttSink(broker.url, device="cam", queue_size=5, **FAST)
    topic = "edge-app/cam/classification"
    changing = [replace(r, index=n, changed=True) for n, r in enumerate(results)]
    try:
        for r in changing[:5]:
            sink.write(NO_PIXELS, r)
        assert listener.wait(lambda: len(listener.on(topic)) == 5)

        broker.stop()
        assert listener.wait(lambda: not sink.connected, 10)
        t = time.perf_counter()
        for r in changing[5:25]:  # the outage: 20 results, 5 fit the queue
            sink.write(NO_PIXELS, r)
        assert time.perf_counter() - t < 0.1  # write() never waits for the broker
        assert sink.dropped == 15 and sink.queued == 5

        broker.start()
        assert listener.wait(lambda: sink.connected, 20)
        for r in changing[25:30]:
            sink.write(NO_PIXELS, r)
        # Only first deliveries: retained copies come again on resubscribing, and the restarted broker
        # redelivers (DUP flag) what it had in flight to the persistent session when it stopped.
        live = lambda t: [m for m in listener.on(t) if not m.retain and not m.dup]  # noqa: E731
        assert listener.wait(lambda: len(live(topic)) >= 15, 20), [m.json()["frame"] for m in live(topic)]
        frames = [m.json()["frame"] for m in live(topic)]
        # Before the outage, the newest five queued during it (oldest dropped), and the ones after it.
        assert frames == [*range(5), *range(20, 25), *range(25, 30)]
        assert sink.reconnects >= 1
        availability = [m.payload for m in live("edge-app/cam/availability")]
        assert availability[0] == "online" and availability[-1] == "online" and availability.count("online") >= 2
    finally:
        sink.close()
        listener.close()


@pytest.fixture
def still_scene(tmp_path: Path, sure_photos: tuple[np.ndarray, np.ndarray]) -> Path:
    """A scene that never changes: a cat photo left, a dog photo right (10 frames at 10 fps, for ``loop``)."""
    cat, dog = (cv2.cvtColor(cv2.resize(p, (320, 480)), cv2.COLOR_RGB2BGR) for p in sure_photos)
    path = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (640, 480))
    for _ in range(10):
        writer.write(np.hstack([cat, dog]))
    writer.release()
    return path


def test_states_come_back_after_a_broker_restart_without_persistence(tmp_path: Path, still_scene: Path) -> None:
    """Issue 33: a stock broker forgets retained messages when it restarts; on a still scene no state changes,
    so the app must publish every retained state again when it reconnects (else Home Assistant shows "unknown").
    A clean stop then leaves a retained status saying "stopped"."""
    broker = Broker(tmp_path / "broker", persistence=False).start()
    base = "edge-app/garage"
    left, right, status, availability = f"{base}/state/left", f"{base}/state/right", f"{base}/status", f"{base}/availability"
    overrides = {
        "model": str(default_model_dir("cats-vs-dogs")), "source": str(still_scene), "loop": True, "realtime": True, "headless": True,
        "stats_interval": 0.0, "zone": ["left:0,0,0.5,1", "right:0.5,0,0.5,1"], "debounce": 3, "mqtt": broker.url, "mqtt_device": "garage",
    }  # fmt: skip
    app = App(load_config(None, overrides), handle_signals=False)
    thread = threading.Thread(target=app.run, name="app", daemon=True)
    watcher = Listener(broker.port)
    thread.start()
    try:
        assert watcher.wait(lambda: bool(watcher.on(left) and watcher.on(right)), 30)
        sink = app.mqtt
        assert sink is not None and sink.reconnects == 0
        assert [m.payload for m in watcher.on(left)] == ["cat"] and [m.payload for m in watcher.on(right)] == ["dog"]
        first = [m.json()["frame"] for m in watcher.on(f"{base}/classification")]

        broker.kill()
        assert wait_until(lambda: not sink.connected, 5)
        broker.start()  # the same port, nothing retained
        assert wait_until(lambda: sink.connected and sink.reconnects == 1, 10)

        wanted = (left, right, f"{base}/classification", status, availability, "homeassistant/sensor/garage/state_left/config")
        probe = Listener(broker.port)  # sees them live or retained: once it has, the broker holds them
        try:
            assert probe.wait(lambda: all(probe.on(t) for t in wanted), 5), {t: len(probe.on(t)) for t in wanted}
        finally:
            probe.close()
        late = Listener(broker.port)  # Home Assistant (re)subscribing
        try:
            assert late.wait(lambda: all(late.on(t) for t in wanted), 5), {t: len(late.on(t)) for t in wanted}
            assert [(m.payload, m.retain) for m in late.on(left)] == [("cat", True)]
            assert [(m.payload, m.retain) for m in late.on(right)] == [("dog", True)]
            label = late.on(f"{base}/classification")[-1]
            assert label.retain and label.json()["frame"] == first[-1]  # the newest label, again
            assert late.on(availability)[-1].payload == "online" and late.on(status)[-1].json()["state"] == "running"
        finally:
            late.close()
    finally:
        app.request_stop("test over")
        thread.join(10)
        watcher.close()
    try:
        assert not thread.is_alive() and app.state == "stopped"
        after = Listener(broker.port)  # after a clean stop: the retained status is no longer "running"
        try:
            assert after.wait(lambda: bool(after.on(status) and after.on(availability)), 5)
            final = after.on(status)[-1]
            assert final.retain and final.json()["state"] == "stopped" and final.json()["model"] == "cats-vs-dogs"
            assert after.on(availability)[-1].payload == "offline"
        finally:
            after.close()
    finally:
        broker.stop()


def test_a_clean_close_leaves_a_retained_stopped_status(broker: Broker) -> None:
    running = {**STATUS, "state": "running"}
    sink = MqttSink(broker.url, device="tidy", status=lambda: dict(running), status_interval_s=30.0, **FAST)
    topic = "edge-app/tidy/status"
    listener = Listener(broker.port)
    try:
        assert listener.wait(lambda: bool(listener.on(topic)), 5)
        assert listener.on(topic)[-1].json()["state"] == "running"
    finally:
        sink.close()
    assert listener.wait(lambda: [m.json()["state"] for m in listener.on(topic)][-1] == "stopped", 5)
    listener.close()
    late = Listener(broker.port)
    try:
        assert late.wait(lambda: bool(late.on(topic) and late.on("edge-app/tidy/availability")), 5)
        final = late.on(topic)[-1]
        data = final.json()
        assert final.retain and data["state"] == "stopped" and data["device"] == "tidy"
        assert {k: data[k] for k in STATUS} == STATUS and set(data["mqtt"]) == {"published", "dropped", "reconnects"}  # the same shape
        assert late.on("edge-app/tidy/availability")[-1].payload == "offline"
    finally:
        late.close()


def test_write_never_blocks_without_a_broker(results: list[FrameResult], caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edge_app.mqtt")
    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}", device="alone", queue_size=50, **FAST)
    time.sleep(2.2)  # a few reconnect attempts, logged once
    t = time.perf_counter()
    for n in range(2000):
        sink.write(NO_PIXELS, replace(results[n % len(results)], index=n, changed=True))
    per_write = (time.perf_counter() - t) / 2000
    assert per_write < 0.001
    assert not sink.connected and sink.dropped == 1950 and sink.queued == 50
    t = time.perf_counter()
    sink.close()
    assert time.perf_counter() - t < 6
    assert "queue full" in caplog.text
    assert caplog.text.count("cannot reach MQTT broker") == 1 and sink.last_error == "unreachable"


def test_wrong_password_is_logged_and_retried(tmp_path: Path, results: list[FrameResult], caplog) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "cam", "right pass"], check=True, capture_output=True)
    passwd.chmod(0o600)
    broker = Broker(tmp_path / "auth", extra=f"password_file {passwd}\n").start()
    caplog.set_level(logging.INFO, logger="edge_app.mqtt")
    try:
        wrong = MqttSink(f"mqtt://cam:nope@127.0.0.1:{broker.port}", device="w", **FAST)
        time.sleep(2.2)  # a couple of retries
        assert not wrong.connected and wrong.last_error is not None
        refusals = [r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.getMessage()]
        assert len(refusals) == 1 and "user name and password" in refusals[0].getMessage()
        wrong.close()

        listener = Listener(broker.port, auth=("cam", "right pass"))
        right = MqttSink(f"mqtt://cam:right%20pass@127.0.0.1:{broker.port}", device="r", **FAST)
        assert wait_until(lambda: right.connected, 10)
        right.write(NO_PIXELS, results[0])
        assert listener.wait(lambda: len(listener.on("edge-app/r/classification")) == 1)
        right.close()
        listener.close()
    finally:
        broker.stop()


OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (needed to make a test certificate)")
def test_mqtts_with_a_private_ca(tmp_path: Path, results: list[FrameResult], caplog) -> None:
    assert OPENSSL is not None

    def ssl_cmd(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=tmp_path, check=True, capture_output=True)

    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=edge-test-ca")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl_cmd("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "1",
            "-extfile", "san.ext")  # fmt: skip
    tls = f"cafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\nkeyfile {tmp_path}/server.key\n"
    broker = Broker(tmp_path / "tls", extra=tls).start()
    caplog.set_level(logging.ERROR, logger="edge_app.mqtt")
    try:
        listener = Listener(broker.port, ca=tmp_path / "ca.pem")
        sink = MqttSink(f"mqtts://127.0.0.1:{broker.port}", device="secure", ca_certs=str(tmp_path / "ca.pem"), **FAST)
        sink.write(NO_PIXELS, results[0])
        assert listener.wait(lambda: len(listener.on("edge-app/secure/classification")) == 1)
        sink.close()
        untrusting = MqttSink(f"mqtts://127.0.0.1:{broker.port}", device="untrusting", **FAST)  # system CAs only
        time.sleep(1.5)
        assert not untrusting.connected
        untrusting.close()
        assert "TLS certificate is not trusted" in caplog.text
        listener.close()
    finally:
        broker.stop()
