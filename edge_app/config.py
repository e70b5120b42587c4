"""``AppConfig``: every setting of the frame loop, from a TOML file and/or command-line flags.

The keys mirror the CLI flags (``top_k`` is ``--top-k``). A file is read with ``tomllib``;
unknown keys are rejected by name with close matches, wrong types and out-of-range values by
name too, all as one-line ``ConfigError``s. Flags override the file, but only the flags given.
Relative paths in a file are relative to the file's folder.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from edge_app.delegates import DELEGATES, parse_device
from edge_app.errors import ConfigError
from edge_app.mqtt import BrokerURL
from edge_app.ota import check_url
from edge_app.ota import validate as validate_ota
from edge_app.outputs.logsink import LOG_EXTENSIONS
from edge_app.sources import SourceSpec, redact_url, spec_from_args
from edge_app.sources.base import split_source_name
from edge_app.zones import parse_zone, parse_zones

LOG_FORMATS = ("jsonl", "csv")
SOURCE_KEYS = ("camera", "source", "picamera")


def _meta(help: str, **rules: Any) -> dict[str, Any]:
    """A config field's one-line description and validation rules (min, gt, max, choices, check)."""
    return {"help": help, **rules}


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


def _check_http(value: str) -> None:
    parse_hostport(value)


def _check_mqtt(value: str) -> None:
    BrokerURL.parse(value)


def _check_device(value: str) -> None:
    parse_device(value)


def _named_source(text: str) -> tuple[str | None, str]:
    """``NAME=TARGET`` or a bare target (an existing path is never split at its ``=``)."""
    return (None, text) if Path(text).expanduser().exists() else split_source_name(text)


def _check_source(value: str) -> None:
    if not value.strip():
        raise ConfigError("source is empty: pass a video file, an image folder, a stream URL, or use camera = N")


@dataclass(frozen=True)
class AppConfig:
    """Settings of ``edge-app``; field names are the TOML keys, ``--field-name`` the flags."""

    # model
    model: Path | None = field(default=None, metadata=_meta("model folder, .tflite file, or a shipped bundle: cifar10 (default), cats-vs-dogs, imagenet"))
    labels: Path | None = field(default=None, metadata=_meta("labels file, one class per line (default: labels.txt beside the model)"))
    model_url: str | None = field(
        default=None,
        metadata=_meta("poll this http(s) URL of a bundle folder and install newer bundles (sha256 checked against its manifest) "
                       "into model, reloading between frames", check=check_url),
    )
    model_poll: float = field(default=300.0, metadata=_meta("seconds between model_url polls", gt=0.0))
    model_seed: str | None = field(
        default=None,
        metadata=_meta("when model names a folder that does not exist yet (its parent does), make it a copy of this shipped bundle "
                       "(cifar10, cats-vs-dogs, imagenet) at start: the device's own model folder, where the models page deploys"),
    )
    threads: int | None = field(default=None, metadata=_meta(
        "interpreter CPU threads (default: one if one invoke() takes under 1 ms on one thread, else the usable cores, at most 4)", min=1, max=64))
    prepare: str = field(
        default="auto",
        metadata=_meta(
            "which thread prepares each frame's model input (crop, resize): auto: whichever keeps the slower of capture and "
            "inference faster, measured while running (several sources: capture); capture: the capture thread (lowest latency); "
            "loop: the frame loop, beside invoke()",
            choices=("auto", "capture", "loop"),
        ),
    )
    delegate: str = field(default="cpu", metadata=_meta("cpu, edgetpu (Coral, required) or auto (Coral if present, else CPU)", choices=DELEGATES))
    device: str | None = field(default=None, metadata=_meta("Edge TPU device: usb, usb:N, pci or pci:N (default: the first one)", check=_check_device))
    # source
    camera: int | None = field(default=None, metadata=_meta("camera index (default 0 when no source is given)", min=0))
    source: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "video file, image folder, rtsp:// / http:// stream URL, camera index or picamera:N; repeatable for several cameras in one "
            "process (NAME=TARGET names one: its log file, status, snapshots and states carry the name)",
            check=_check_source,
        ),
    )
    picamera: bool = field(default=False, metadata=_meta("Raspberry Pi CSI camera through picamera2 (camera selects which)"))
    width: int | None = field(default=None, metadata=_meta("capture width requested from a camera", min=1))
    height: int | None = field(default=None, metadata=_meta("capture height requested from a camera", min=1))
    fps: float | None = field(default=None, metadata=_meta("capture rate requested from a camera (paces folders with realtime)", gt=0))
    realtime: bool = field(default=False, metadata=_meta("pace video files and folders at their native rate (newest frame wins)"))
    loop: bool = field(default=False, metadata=_meta("start a video file or folder again at its end"))
    recursive: bool = field(
        default=False, metadata=_meta("with an image folder: also read its subfolders (a class-per-folder dataset); records name each file")
    )
    decode: str = field(
        default="full",
        metadata=_meta(
            "full: decode every frame at full size; reduced: decode MJPEG files, streams and USB cameras at 1/2, 1/4 or 1/8 scale, the "
            "least that covers the model input times its measured margin (manifest decode.cover, check-decode) and every fractional "
            "zone, unless zones are given in pixels; a window, the web view, snapshots "
            "and collecting decode in full only the frames they use: less CPU, slightly other scores",
            choices=("full", "reduced"),
        ),
    )
    open_timeout: float = field(default=10.0, metadata=_meta("seconds to wait for a camera or stream to open", gt=0))
    watchdog: float = field(default=5.0, metadata=_meta("seconds a live source may give no frame before its capture is abandoned and reopened", gt=0))
    # classification
    top_k: int = field(default=3, metadata=_meta("how many classes to report per frame", min=1, max=100))
    threshold: float = field(default=0.0, metadata=_meta("report classes with at least this score (0-1)", min=0.0, max=1.0))
    smoothing: float = field(default=1.0, metadata=_meta("EMA alpha over frames in (0, 1]: lower is smoother, 1 is off", gt=0.0, max=1.0))
    zone: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "classify this zone NAME:X,Y,W,H (fractions of the frame, or pixels) instead of the centre crop; repeatable, "
            "each zone with its own smoothing, state, log field, overlay box and MQTT topic",
            check=parse_zone,
        ),
    )
    debounce: int | None = field(
        default=None,
        metadata=_meta("a state changes only after N consecutive results agree on a top label above threshold; "
                       "records carry the state and its dwell (default 1 with --zone, else no state)", min=1, max=10_000),
    )
    # outputs
    headless: bool = field(default=False, metadata=_meta("no window: log, snapshots, web and MQTT only"))
    log: Path | None = field(default=None, metadata=_meta("append one record per frame to this file"))
    log_format: str | None = field(default=None, metadata=_meta("jsonl or csv (default: from the log file's suffix, .jsonl or .csv)", choices=LOG_FORMATS))
    log_changes_only: bool = field(default=False, metadata=_meta("log only frames whose top-1 label changed"))
    log_max_bytes: int = field(default=10_000_000, metadata=_meta("rotate the log file at this size (log.1 .. log.5 are kept)", min=1024))
    snapshots: Path | None = field(default=None, metadata=_meta("folder for annotated JPEG snapshots, saved when the top-1 label changes"))
    snapshot_max: int = field(default=100, metadata=_meta("keep at most this many snapshots (oldest deleted first)", min=1))
    snapshot_min_score: float | None = field(
        default=None, metadata=_meta("also save frames whose top-1 score reaches this (0-1), at most every snapshot_interval", min=0.0, max=1.0)
    )
    snapshot_interval: float = field(default=10.0, metadata=_meta("seconds between snapshots saved for snapshot_min_score", min=0.0))
    collect: Path | None = field(
        default=None,
        metadata=_meta("save candidate training frames (zone crops with --zone) into DIR/inbox for review: on an interval, on label "
                       "changes and when unsure, near-duplicates skipped; reviewed images go to DIR/train/<class>"),
    )
    collect_interval: float = field(default=60.0, metadata=_meta("collect: seconds between frames saved anyway", gt=0.0))
    collect_min_gap: float = field(default=1.0, metadata=_meta("collect: at least this many seconds between two saves of a zone", min=0.0))
    collect_below: float = field(default=0.5, metadata=_meta("collect: save frames whose top score is below this (0-1)", min=0.0, max=1.0))
    collect_max_files: int = field(default=1000, metadata=_meta("collect: pause when the inbox holds this many images", min=1))
    collect_max_mb: float = field(default=500.0, metadata=_meta("collect: pause when the inbox holds this many megabytes", gt=0.0))
    http: str | None = field(
        default=None,
        metadata=_meta(
            "serve the live view, /api/status, /healthz and /metrics on [HOST:]PORT (a bare port is 127.0.0.1 only; 0.0.0.0:PORT for every interface)",
            check=_check_http,
        ),
    )
    http_token: str | None = field(default=None, metadata=_meta("require ?token=... or Authorization: Bearer ... on the web server"))
    http_hosts: tuple[str, ...] = field(
        default=(),
        metadata=_meta("also answer web requests whose Host is this name (repeatable; the bound address, localhost and this machine's "
                       "names always are; '*.example.com' for a domain); other Host names get 400 (DNS rebinding)"),
    )
    mqtt: str | None = field(default=None, metadata=_meta("publish results to an MQTT broker, e.g. mqtt://host:1883", check=_check_mqtt))
    mqtt_prefix: str = field(default="edge-app", metadata=_meta("MQTT topic prefix (topics are PREFIX/DEVICE/classification, /status, /availability)"))
    mqtt_device: str | None = field(default=None, metadata=_meta("device name in MQTT topics (default: the host name)"))
    mqtt_every: int = field(default=0, metadata=_meta("also publish every Nth frame (0: only top-1 label changes)", min=0))
    # run control
    max_frames: int | None = field(default=None, metadata=_meta("stop after this many frames", min=1))
    duration: float | None = field(default=None, metadata=_meta("stop after this many seconds", gt=0))
    stats_interval: float = field(default=10.0, metadata=_meta("seconds between stats log lines (0: off)", min=0.0))

    def __post_init__(self) -> None:
        if isinstance(self.source, str | Path):  # AppConfig(source="clip.mp4") from Python code
            object.__setattr__(self, "source", (str(self.source),))
        if self.camera is not None and self.source:
            raise ConfigError("camera and source are mutually exclusive: set only one of them (a file's choice is replaced by --camera/--source)")
        if self.picamera and self.source:
            raise ConfigError("picamera and source are mutually exclusive: picamera with camera = N opens CSI camera N")
        if self.http_token is not None and self.http is None:
            raise ConfigError("http_token is set but http is not: add http = \"0.0.0.0:8080\" (--http) or remove the token")
        if self.model_seed is not None and self.model is None:
            raise ConfigError("model_seed is set but model is not: set model = DIR (the folder to create, e.g. /var/lib/edge-app/model)")
        if self.http_hosts and self.http is None:
            raise ConfigError("http_hosts is set but http is not: add http = \"0.0.0.0:8080\" (--http) or remove http_hosts")
        if self.log is not None and self.log_format is None and self.log.suffix.lower() not in LOG_EXTENSIONS:
            raise ConfigError(f"cannot tell the log format from {self.log.name!r}: name the file .jsonl or .csv, or set log_format (--log-format)")
        for item in self.source:
            _check_source(item)
        self.source_specs()  # bad targets and names used twice
        parse_zones(self.zone)  # names used twice
        validate_ota(self.model_url, self.model)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "config", base_dir: Path | None = None) -> AppConfig:
        """A config from TOML-style keys (``top_k``); ``origin`` names the file in errors."""
        return cls().merged(data, origin, base_dir)

    def merged(self, data: Mapping[str, Any], origin: str = "command line", base_dir: Path | None = None) -> AppConfig:
        """This config with ``data`` applied on top; a new camera/source/picamera choice replaces the old one."""
        specs = field_specs()
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in specs:
                raise ConfigError(_unknown_key_message(key, origin))
            values[key] = _convert(specs[key], raw, origin, base_dir)
        if any(k in values for k in SOURCE_KEYS):
            for k in SOURCE_KEYS:
                values.setdefault(k, specs[k].default)
        try:
            return replace(self, **values)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None

    # ------------------------------------------------------------------ views

    def source_spec(self) -> SourceSpec:
        """The capture spec of the first (usually the only) source: camera 0 when no source is configured."""
        return self.source_specs()[0][1]

    def source_specs(self) -> list[tuple[str, SourceSpec]]:
        """``(name, spec)`` of every source, in order; names are ``NAME=`` prefixes or made from the target (``camera0``, ``door``)."""
        if not self.source:
            return [(self._spec(None).short_name(), self._spec(None))]
        specs: list[tuple[str, SourceSpec]] = []
        seen: set[str] = set()
        for item in self.source:
            given, target = _named_source(item)
            spec = self._spec(target)
            name = given or spec.short_name()
            if given is None:  # two files called clip.mp4 in different folders: clip, clip-2
                base, n = name, 2
                while name in seen:
                    name, n = f"{base}-{n}", n + 1
            elif given in seen:
                raise ConfigError(f"source name {given!r} is used twice: give each --source NAME=TARGET its own name")
            seen.add(name)
            specs.append((name, spec))
        return specs

    def _spec(self, source: str | None) -> SourceSpec:
        return spec_from_args(
            camera=self.camera,
            source=source,
            picamera=self.picamera,
            width=self.width,
            height=self.height,
            fps=self.fps,
            loop=self.loop,
            realtime=self.realtime,
            recursive=self.recursive,
            open_timeout_s=self.open_timeout,
            read_timeout_s=self.watchdog,
        )

    def changed(self) -> dict[str, Any]:
        """The keys whose value differs from the default (what a file or flags set)."""
        defaults = AppConfig()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(defaults, f.name)}

    def describe(self) -> list[str]:
        """``key = value`` lines for every key that is not the default (secrets masked)."""
        lines = []
        for key, value in self.changed().items():
            shown = "***" if key == "http_token" else _redact(value) if key == "mqtt" else value
            lines.append(f"{key} = {shown}")
        return lines


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: type
    optional: bool
    default: Any
    help: str
    rules: Mapping[str, Any]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@cache
def field_specs() -> dict[str, FieldSpec]:
    """Every config key with its base type (``int``, ``float``, ``bool``, ``str``, ``Path``) and rules."""
    hints = typing.get_type_hints(AppConfig)
    specs = {}
    for f in fields(AppConfig):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        kind = args[0] if args else hint
        if typing.get_origin(hint) is tuple:  # a repeatable flag / a TOML list of strings
            kind, args = tuple, []
        rules = {k: v for k, v in f.metadata.items() if k != "help"}
        default = None if f.default is MISSING else f.default
        specs[f.name] = FieldSpec(f.name, kind, bool(args), default, str(f.metadata.get("help", "")), rules)
    return specs


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """The file at ``path`` (if any) with ``overrides`` (the flags actually given) on top."""
    config = AppConfig()
    if path is not None:
        config = AppConfig.from_mapping(read_toml(path), origin=str(path), base_dir=path.expanduser().resolve().parent)
    if overrides:
        config = config.merged(overrides, origin="command line")
    return config


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.expanduser().open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the path given to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder: pass a .toml file to --config") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc}): check its permissions") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


# ---------------------------------------------------------------------- validation


def _unknown_key_message(key: str, origin: str) -> str:
    keys = sorted(field_specs())
    close = difflib.get_close_matches(str(key).replace("-", "_"), keys, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see systemd/config.example.toml for every key"
    return f"{origin}: unknown key {key!r} ({hint}); known keys: {', '.join(keys)}"


def _type_name(spec: FieldSpec) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path (string)", tuple: "a list of strings"}
    return names.get(spec.kind, spec.kind.__name__)


def _convert(spec: FieldSpec, raw: Any, origin: str, base_dir: Path | None) -> Any:
    name = spec.flag if origin == "command line" else spec.name
    where = "" if origin == "command line" else f"{origin}: "

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{where}{name} {what}")

    if raw is None:
        if spec.optional:
            return None
        raise bad(f"must be {_type_name(spec)}, got nothing")
    kind = spec.kind
    value: Any
    if kind is tuple:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i.strip() for i in items):
            raise bad(f"must be a list of strings (TOML: {spec.name} = [\"...\", \"...\"]), got {raw!r}")
        if "check" in spec.rules:
            for item in items:
                try:
                    spec.rules["check"](item)
                except (ValueError, ConfigError) as exc:
                    raise bad(f"is invalid: {exc}") from None
        return tuple(items)
    if kind is bool:
        if not isinstance(raw, bool):
            raise bad(f"must be true or false, got {raw!r}")
        value = raw
    elif kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad(f"must be an integer, got {raw!r}")
        value = raw
    elif kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise bad(f"must be a number, got {raw!r}")
        value = float(raw)
        if not math.isfinite(value):
            raise bad(f"must be a finite number, got {raw!r}")
    elif kind in (str, Path):
        if isinstance(raw, Path):
            raw = str(raw)
        if not isinstance(raw, str):
            raise bad(f"must be {_type_name(spec)}, got {raw!r}")
        if not raw.strip():
            raise bad("is empty: set a value or leave the key out")
        value = raw
        if kind is Path:
            path = Path(raw).expanduser()
            value = base_dir / path if base_dir is not None and not path.is_absolute() else path
    else:  # pragma: no cover - every field above has one of these types
        raise TypeError(f"unsupported config type {kind!r}")

    rules = spec.rules
    if "choices" in rules and value not in rules["choices"]:
        raise bad(f"must be one of {', '.join(rules['choices'])}, got {value!r}")
    if "min" in rules and value < rules["min"]:
        raise bad(f"must be >= {rules['min']}{_upper(rules)}, got {value!r}")
    if "gt" in rules and value <= rules["gt"]:
        raise bad(f"must be > {rules['gt']}{_upper(rules)}, got {value!r}")
    if "max" in rules and value > rules["max"]:
        lower = f">= {rules['min']} and " if "min" in rules else f"> {rules['gt']} and " if "gt" in rules else ""
        raise bad(f"must be {lower}<= {rules['max']}, got {value!r}")
    if "check" in rules:
        try:
            rules["check"](value)
        except (ValueError, ConfigError) as exc:
            raise bad(f"is invalid: {exc}") from None
    return value


def _upper(rules: Mapping[str, Any]) -> str:
    return f" and <= {rules['max']}" if "max" in rules else ""


def _redact(url: object) -> object:
    return redact_url(url) if isinstance(url, str) else url
