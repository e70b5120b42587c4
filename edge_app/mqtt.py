"""``MqttSink``: results to an MQTT broker (paho-mqtt 2), with Home Assistant discovery.

Topics (``<prefix>/<device>/...``):

* ``classification``: JSON of each top-1 label change, and of every Nth frame with ``every_n > 0``
  (retained, so a new subscriber sees the current label);
* ``availability``: ``online`` while connected, ``offline`` on close and as the last will (retained);
* ``status``: the app's ``status()`` JSON every ``status_interval_s`` (retained); on a clean ``close()`` a last
  one with ``"state": "stopped"`` (a crash leaves it as it was: the last will marks the device offline);
* ``state/<zone>`` (``state/frame`` without zones): the debounced state (``--debounce``, ``--zone``) as a plain
  label, published when it changes and retained, so Home Assistant shows the right state after a restart;
* ``homeassistant/sensor/<device>/label/config``, ``.../score/config`` and ``.../state_<zone>/config``: discovery
  (retained), so the label, its confidence and every state appear in Home Assistant by themselves (again, with
  the new labels, after a model reload).

``write()`` never blocks: it puts the message in a bounded queue (the oldest is dropped and counted
when it is full) that a publisher thread hands to paho while connected. paho's network thread
(``connect_async`` + ``loop_start``) connects, and reconnects with exponential backoff; on every
(re)connect everything retained is published again: availability, discovery, a fresh status, and the newest
classification and state of every zone (unless a newer one is still queued), since a broker without
persistence forgets retained messages when it restarts and a still scene would publish no change.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.config.values import BrokerURL
from edge_app.errors import ConfigError, OutputError
from edge_app.outputs import FrameResult
from edge_app.zones import WHOLE_FRAME

try:
    import paho.mqtt.client as paho

    HAVE_PAHO = True
except ImportError:  # pragma: no cover - the integrations extra is not installed
    HAVE_PAHO = False

log = logging.getLogger(__name__)

DISCOVERY_PREFIX = "homeassistant"
ONLINE, OFFLINE = "online", "offline"


def topic_safe(name: str) -> str:
    """A device name usable in MQTT topics and Home Assistant ids: ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "edge"


@dataclass
class _Message:
    topic: str
    payload: str
    qos: int
    retain: bool


class MqttSink:
    """Publishes results, availability, status and discovery to MQTT (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        device: str | None = None,
        prefix: str = "edge-app",
        every_n: int = 0,
        status: Callable[[], dict[str, Any]] | None = None,
        status_interval_s: float = 30.0,
        labels: Sequence[str] = (),
        qos: int = 1,
        queue_size: int = 1000,
        keepalive_s: int = 30,
        reconnect_delay_s: tuple[float, float] = (1.0, 30.0),
        ca_certs: str | None = None,
        model: str | None = None,
        states: Sequence[str] = (),
    ) -> None:
        if not HAVE_PAHO:
            raise OutputError("MQTT needs paho-mqtt 2: pip install 'paho-mqtt>=2' (or the project's [integrations] extra)")
        self.broker = BrokerURL.parse(url)
        if every_n < 0:
            raise ConfigError(f"MQTT every_n must be 0 (label changes only) or more, got {every_n}")
        if qos not in (0, 1, 2):
            raise ConfigError(f"MQTT QoS must be 0, 1 or 2, got {qos}")
        if queue_size < 1:
            raise ConfigError(f"MQTT queue_size must be at least 1, got {queue_size}")
        if not prefix.strip("/") or any(c in prefix for c in "#+"):
            raise ConfigError(f"bad MQTT topic prefix {prefix!r}: it must be non-empty without '#' or '+'")
        self.device = topic_safe(device or socket.gethostname())
        self.prefix = prefix.strip("/")
        self.base = f"{self.prefix}/{self.device}"
        self.topic_classification = f"{self.base}/classification"
        self.topic_availability = f"{self.base}/availability"
        self.topic_status = f"{self.base}/status"
        self.every_n = every_n
        self.status = status
        self.status_interval_s = status_interval_s
        self.labels = list(labels)
        self.qos = qos
        self.model = model
        self.states = [topic_safe(n) for n in states]  # zone names, or [WHOLE_FRAME]; empty: no states
        self.published = 0  # messages handed to paho
        self.dropped = 0  # messages dropped because the queue was full
        self.connects = 0
        self.last_error: str | None = None
        self._frames = 0
        self._queue: deque[_Message] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._announce = False  # publish availability + discovery before anything else
        # the newest message written to each retained result topic (classification, state/<zone>): published
        # again on every (re)connect; under _cond
        self._retained: dict[str, _Message] = {}
        self._closing = threading.Event()
        self._next_status = 0.0 if status is not None else float("inf")

        client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=f"{self.prefix}-{self.device}-{os.getpid()}",
            transport="websockets" if self.broker.transport == "websockets" else "tcp",
        )
        if self.broker.transport == "websockets":
            client.ws_set_options(path=self.broker.path)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            try:
                client.tls_set(ca_certs=ca_certs, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise OutputError(f"cannot set up TLS for {self.broker.redacted()}: {exc}; check the CA certificate file") from exc
        client.will_set(self.topic_availability, OFFLINE, qos=1, retain=True)
        low, high = reconnect_delay_s
        client.reconnect_delay_set(min_delay=max(1, round(low)), max_delay=max(1, round(high)))
        client.max_queued_messages_set(max(100, queue_size))  # QoS>0 messages paho holds until acknowledged
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client
        try:
            client.connect_async(self.broker.host, self.broker.port, keepalive=keepalive_s)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot connect to MQTT broker {self.broker.redacted()}: {exc}") from exc
        client.loop_start()
        self._thread = threading.Thread(target=self._publish_loop, name="mqtt-publisher", daemon=True)
        self._thread.start()
        log.info("MQTT: publishing to %s under %s/", self.broker.redacted(), self.base)

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            reason = str(reason_code)
            if reason != self.last_error:
                hint = "; check the user name and password in the URL" if "auth" in reason.lower() else ""
                log.error("MQTT broker %s refused the connection: %s%s (retrying)", self.broker.redacted(), reason, hint)
            self.last_error = reason
            return
        self.connects += 1
        if self.connects > 1 or self.last_error:
            log.info("MQTT: connected to %s again", self.broker.redacted())
        self.last_error = None
        with self._cond:
            self._announce = True
            self._connected.set()
            self._cond.notify_all()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        reason = "unreachable"
        if reason != self.last_error:
            tls = ", or its TLS certificate is not trusted" if self.broker.tls else ""
            log.error("cannot reach MQTT broker %s (no answer or connection refused%s); retrying with backoff", self.broker.redacted(), tls)
        self.last_error = reason

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._closing.is_set():  # (a refused connect was logged by _on_connect)
            self.last_error = str(reason_code)
            log.warning("MQTT: lost the connection to %s (%s); reconnecting with backoff", self.broker.redacted(), self.last_error)

    # ------------------------------------------------------------------ Sink

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Queue the result when its label changed (or every ``every_n`` frames); never blocks."""
        self._frames += 1
        for z in result.states or []:
            if z.state_changed:
                self._enqueue(_Message(self.state_topic(z.name), z.state or "", self.qos, True), remember=True)
        if not (result.changed or (self.every_n > 0 and self._frames % self.every_n == 0)):
            return
        record = result.to_json_dict()
        record["label"] = result.label
        record["score"] = round(result.score, 4)
        record["device"] = self.device
        self._enqueue(_Message(self.topic_classification, json.dumps(record, separators=(",", ":")), self.qos, True), remember=True)

    def state_topic(self, name: str) -> str:
        return f"{self.base}/state/{topic_safe(name)}"

    def update_model(self, labels: Sequence[str], model: str | None) -> None:
        """After a model reload: publish discovery again with the new labels (retained configs replace the old)."""
        self.labels, self.model = list(labels), model
        for message in self.discovery_messages():
            self._enqueue(message)

    def _enqueue(self, message: _Message, remember: bool = False) -> None:
        with self._cond:
            if remember:
                self._retained[message.topic] = message
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("MQTT: outgoing queue full (%d); dropped %d oldest message(s) so far", self._queue_size, self.dropped)
            self._queue.append(message)
            self._cond.notify_all()

    # ------------------------------------------------------------------ publisher thread

    def discovery_messages(self) -> list[_Message]:
        """Home Assistant MQTT discovery configs for the label and score sensors (retained)."""
        device = {
            "identifiers": [f"edge-app-{self.device}"],
            "name": self.device,
            "manufacturer": "edge-recognition",
            "model": self.model or "edge-app classifier",
        }
        common = {
            "state_topic": self.topic_classification,
            "availability_topic": self.topic_availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
        }
        label: dict[str, Any] = {
            **common,
            "name": "Label",
            "unique_id": f"{self.device}_label",
            "object_id": f"{self.device}_label",
            "icon": "mdi:eye",
            "value_template": "{{ value_json.label or 'none' }}",
            "json_attributes_topic": self.topic_classification,
            "json_attributes_template": "{{ {'score': value_json.score, 'top': value_json.top, 'frame': value_json.frame} | tojson }}",
        }
        if self.labels:
            label["device_class"] = "enum"
            label["options"] = [*self.labels, "none"]
        score = {
            **common,
            "name": "Confidence",
            "unique_id": f"{self.device}_score",
            "object_id": f"{self.device}_score",
            "icon": "mdi:percent",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "value_template": "{{ (value_json.score * 100) | round(1) }}",
        }
        messages = [
            _Message(f"{DISCOVERY_PREFIX}/sensor/{self.device}/label/config", json.dumps(label), 1, True),
            _Message(f"{DISCOVERY_PREFIX}/sensor/{self.device}/score/config", json.dumps(score), 1, True),
        ]
        for name in self.states:
            state: dict[str, Any] = {
                **common,
                "state_topic": self.state_topic(name),
                "name": f"State {name}" if name != WHOLE_FRAME else "State",
                "unique_id": f"{self.device}_state_{name}",
                "object_id": f"{self.device}_state_{name}",
                "icon": "mdi:state-machine",
            }
            if self.labels:
                state["device_class"] = "enum"
                state["options"] = list(self.labels)
            messages.append(_Message(f"{DISCOVERY_PREFIX}/sensor/{self.device}/state_{name}/config", json.dumps(state), 1, True))
        return messages

    def _status_message(self, state: str | None = None, qos: int | None = None) -> _Message | None:
        """The status JSON (retained); ``state`` replaces the app's ``state`` (``"stopped"`` on close)."""
        if self.status is None:
            return None
        try:
            data = dict(self.status())
        except Exception:
            log.exception("status() failed; no MQTT status this time")
            if state is None:
                return None
            data = {}  # closing: still say so
        if state is not None:
            data["state"] = state
        data.setdefault("device", self.device)
        data["mqtt"] = {"published": self.published, "dropped": self.dropped, "reconnects": self.reconnects}
        return _Message(self.topic_status, json.dumps(data, default=str, separators=(",", ":")), self.qos if qos is None else qos, True)

    def _republish(self) -> list[_Message]:
        """The newest retained result of each topic, unless a newer one is still queued (it will replace it anyway)."""
        with self._cond:
            queued = {m.topic for m in self._queue}
            return [m for topic, m in self._retained.items() if topic not in queued]

    def _publish(self, message: _Message) -> bool:
        """Hand a message to paho; False when it must wait for the next connection."""
        info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc == paho.MQTT_ERR_SUCCESS or (info.rc == paho.MQTT_ERR_NO_CONN and message.qos > 0):
            self.published += 1  # sent, or held by paho for resending after the reconnect
            return True
        return False

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing.is_set() and not (
                    self._connected.is_set() and (self._announce or self._queue or time.monotonic() >= self._next_status)
                ):
                    self._cond.wait(min(0.5, max(0.05, self._next_status - time.monotonic())))
                if self._closing.is_set():
                    return
                announce, self._announce = self._announce, False
            if announce:  # a broker without persistence has forgotten every retained message: publish them again
                for m in [_Message(self.topic_availability, ONLINE, 1, True), *self.discovery_messages(), *self._republish()]:
                    self._publish(m)
                if self.status is not None:
                    self._next_status = 0.0  # a fresh status right after every (re)connect
            if time.monotonic() >= self._next_status:
                self._next_status = time.monotonic() + self.status_interval_s
                status = self._status_message()
                if status is not None:
                    self._publish(status)
            self._drain()

    def _drain(self) -> None:
        while self._connected.is_set() and not self._closing.is_set():
            with self._cond:
                if not self._queue:
                    return
                message = self._queue.popleft()
            if not self._publish(message):
                with self._cond:
                    self._queue.appendleft(message)  # paho cannot take it now: keep it and try again shortly
                    self._cond.wait(0.1)
                return

    # ------------------------------------------------------------------ close

    def close(self, timeout_s: float = 3.0) -> None:
        """Publish what is queued (up to ``timeout_s``), a last status saying ``stopped``, mark the device offline, disconnect."""
        if self._closing.is_set():
            return
        deadline = time.monotonic() + timeout_s
        while self._connected.is_set() and self.queued and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2)
        if self._connected.is_set():
            stopped = self._status_message(state="stopped", qos=1)  # retained: no longer "running" once the app is gone
            goodbye = [*([stopped] if stopped is not None else []), _Message(self.topic_availability, OFFLINE, 1, True)]
            infos = [self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in goodbye]
            for message, info in zip(goodbye, infos, strict=True):
                try:
                    info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.debug("MQTT: %s message not confirmed: %s", message.topic, exc)
        self.client.disconnect()
        self.client.loop_stop()
        if self.queued:
            log.warning("MQTT: %d message(s) not sent before closing", self.queued)
