"""The syntax of single config values, checked without importing what uses them.

Parsers the config validates with and the runtime modules use too: ``parse_hostport`` (``--http``, ``review``),
``BrokerURL`` (``--mqtt``, ``edge_app.mqtt``), ``parse_device`` and ``DELEGATES`` (``edge_app.delegates``),
``check_bundle_url`` (``edge_app.ota``), ``LOG_EXTENSIONS`` (``edge_app.outputs.logsink``) and ``zone_parts``
(``edge_app.zones``). Each raises ``ConfigError`` (or ``ValueError``) with a one-line reason; the config names the key.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from edge_app.errors import ConfigError

LOG_FORMATS = ("jsonl", "csv")
LOG_EXTENSIONS: dict[str, str] = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
DELEGATES = ("cpu", "edgetpu", "auto")
PREPARE_MODES = ("auto", "capture", "loop")
DECODE_MODES = ("full", "reduced")
_DEVICE = re.compile(r"^(usb|pci)?(:\d+)?$")
ZONE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ZONE_EXAMPLE = "expected NAME:X,Y,W,H, e.g. door:0.6,0.1,0.3,0.5 (fractions of the frame) or door:380,40,200,260 (pixels)"

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883, "ws": 80, "wss": 443}
TLS_SCHEMES = ("mqtts", "ssl", "wss")
WS_SCHEMES = ("ws", "wss")


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to ``(host, port)``: a bare ``8080`` or ``:8080`` is loopback only (127.0.0.1), ``0.0.0.0:8080``
    every interface, ``[::1]:8080`` IPv6. Serving beyond this machine is always asked for by name."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 0.0.0.0:8080 or 127.0.0.1:8080, got {text!r}")
    return host, int(port_text)


def parse_device(text: str | None) -> str | None:
    """Normalise an Edge TPU device string: ``usb``, ``usb:N``, ``pci``, ``pci:N`` or ``:N`` (Nth of any kind)."""
    if text is None:
        return None
    value = text.strip().lower()
    if not value or not _DEVICE.match(value) or value == ":":
        raise ConfigError(f"Edge TPU device must be usb, usb:N, pci, pci:N or :N (e.g. usb:0), got {text!r}")
    return value


def check_bundle_url(url: str) -> None:
    """A ``model_url``: an http(s) URL of a published bundle folder."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL of a bundle folder (with manifest.json), got {url!r}")


@dataclass(frozen=True)
class BrokerURL:
    """A parsed ``mqtt[s]://[user[:password]@]host[:port]`` (also ``tcp``, ``ssl``, ``ws``, ``wss``)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    path: str = "/mqtt"  # websockets only

    @property
    def tls(self) -> bool:
        return self.scheme in TLS_SCHEMES

    @property
    def transport(self) -> str:
        return "websockets" if self.scheme in WS_SCHEMES else "tcp"

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username and self.password else f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        example = "expected e.g. mqtt://host:1883 or mqtts://user:password@host:8883"
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad MQTT broker URL {url!r}: {exc}; {example}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ConfigError(f"bad MQTT broker URL {url!r}: unknown scheme {parts.scheme!r}; {example} ({', '.join(DEFAULT_PORTS)})")
        if not parts.hostname:
            raise ConfigError(f"bad MQTT broker URL {url!r}: no host name; {example}")
        if port == 0:
            raise ConfigError(f"bad MQTT broker URL {url!r}: port 0; the broker port must be 1-65535")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port or DEFAULT_PORTS[scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            path=parts.path or "/mqtt",
        )


def zone_parts(text: str) -> tuple[str, float, float, float, float, bool]:
    """``NAME:X,Y,W,H`` -> ``(name, x, y, w, h, fractional)``; a ConfigError that shows the expected form otherwise."""
    name, sep, rest = str(text).partition(":")
    if not sep:
        raise ConfigError(f"zone {text!r} has no name: {ZONE_EXAMPLE}")
    if not ZONE_NAME.fullmatch(name):
        raise ConfigError(f"zone name {name!r} must be 1-64 letters, digits, '_' or '-' (it names MQTT topics): {ZONE_EXAMPLE}")
    try:
        nums = [float(p) for p in rest.split(",")]
    except ValueError:
        raise ConfigError(f"zone {text!r}: X,Y,W,H must be numbers; {ZONE_EXAMPLE}") from None
    if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
        raise ConfigError(f"zone {text!r}: give exactly four numbers X,Y,W,H; {ZONE_EXAMPLE}")
    x, y, w, h = nums
    if min(nums) < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"zone {text!r}: X and Y must be >= 0 and W, H > 0; {ZONE_EXAMPLE}")
    fractional = max(nums) <= 1.0
    if fractional and (x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9):
        raise ConfigError(f"zone {text!r} reaches outside the frame (X+W and Y+H must be at most 1 for fractions)")
    if not fractional and not all(float(v).is_integer() for v in nums):
        raise ConfigError(f"zone {text!r}: pixel zones take whole numbers; for fractions keep all four numbers at most 1")
    return name, x, y, w, h, fractional


def check_zone_names(texts: tuple[str, ...] | list[str]) -> list[tuple[str, float, float, float, float, bool]]:
    """Every zone parsed, and a ConfigError when a name is used twice."""
    parts = [zone_parts(t) for t in texts]
    names = [p[0] for p in parts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"zone name(s) used twice: {', '.join(dup)}; give every --zone its own name")
    return parts
