"""The config's sections as pydantic models: types, ranges, choices and the checks between keys.

``AppConfig`` holds one frozen section per concern (``[model]``, ``[sources]``, ``[classification]``, ``[log]``,
``[snapshots]``, ``[collect]``, ``[http]``, ``[mqtt]``, ``[run]``); every section forbids unknown keys and is strict
(TOML ``1`` is not ``true``, ``2.5`` is not an integer). Every setting names its command-line flag (``flag``), which is
also its old top-level key (``mqtt_prefix`` for ``[mqtt] prefix``). ``edge_app.config.loading`` turns files and
flags into an ``AppConfig`` and pydantic's errors into one line naming the key as the user wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from edge_app.config.sources import SourceSpec, redact_url, spec_from_args, split_source_name
from edge_app.config.values import LOG_EXTENSIONS, BrokerURL, check_bundle_url, check_zone_names, parse_device, parse_hostport, zone_parts
from edge_app.errors import ConfigError

SECRET_FLAGS = ("http_token",)
URL_FLAGS = ("mqtt",)  # shown with any password masked


def setting(default: Any, help: str, flag: str, **constraints: Any) -> Any:
    """A config key: its default, its one-line description, the flag (= old top-level key) that sets it, and its range."""
    return Field(default, description=help, json_schema_extra={"flag": flag}, **constraints)


# ---------------------------------------------------------------------- value types


def _to_path(value: object) -> Path | None:
    if value is None:
        return None
    if isinstance(value, Path):
        return value.expanduser()
    if not isinstance(value, str):
        raise PydanticCustomError("path_type", "must be a path (string)")
    if not value.strip():
        raise PydanticCustomError("empty", "is empty")
    return Path(value).expanduser()


def _to_strings(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i.strip() for i in items):
        raise PydanticCustomError("strings_type", "must be a list of strings")
    return tuple(items)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "is empty")
    return value


def _checked(check: Callable[[str], object]) -> Callable[[Any], Any]:
    """An after-validator running ``check`` on a value (each item of a tuple); its ValueError/ConfigError names the reason."""

    def run(value: Any) -> Any:
        for item in value if isinstance(value, tuple) else () if value is None else (value,):
            try:
                check(item)
            except (ValueError, ConfigError) as exc:
                raise PydanticCustomError("invalid", "is invalid: {reason}", {"reason": str(exc)}) from None
        return value

    return run


def _check_source(value: str) -> None:
    if not value.strip():
        raise ConfigError("source is empty: pass a video file, an image folder, a stream URL, or use camera = N")


OptPath = Annotated[Path | None, BeforeValidator(_to_path)]
Text = Annotated[str, AfterValidator(_non_empty)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_to_strings)]


class Section(BaseModel):
    """One ``[table]`` of the config file: unknown keys are errors, types are not coerced, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, validate_default=False)


class ModelSection(Section):
    """``[model]``: which model, how it is updated, and where it runs."""

    path: OptPath = setting(None, "model folder, .tflite file, or a shipped bundle: imagenet (default), cats-vs-dogs, cifar10", "model")
    labels: OptPath = setting(None, "labels file, one class per line (default: labels.txt beside the model)", "labels")
    url: Annotated[Text | None, AfterValidator(_checked(check_bundle_url))] = setting(
        None,
        "poll this http(s) URL of a bundle folder and install newer bundles (sha256 checked against its manifest) into model, "
        "reloading between frames",
        "model_url",
    )
    poll: float = setting(300.0, "seconds between model_url polls", "model_poll", gt=0.0)
    seed: Text | None = setting(
        None,
        "when model names a folder that does not exist yet (its parent does), make it a copy of this shipped bundle "
        "(imagenet, cats-vs-dogs, cifar10) at start: the device's own model folder, where the models page deploys",
        "model_seed",
    )
    threads: int | None = setting(
        None, "interpreter CPU threads (default: one if one invoke() takes under 1 ms on one thread, else the usable cores, at most 4)",
        "threads", ge=1, le=64,
    )
    prepare: Literal["auto", "capture", "loop"] = setting(
        "auto",
        "which thread prepares each frame's model input (crop, resize): auto: whichever keeps the slower of capture and "
        "inference faster, measured while running (several sources: capture); capture: the capture thread (lowest latency); "
        "loop: the frame loop, beside invoke()",
        "prepare",
    )
    delegate: Literal["cpu", "edgetpu", "auto"] = setting("cpu", "cpu, edgetpu (Coral, required) or auto (Coral if present, else CPU)", "delegate")
    device: Annotated[Text | None, AfterValidator(_checked(parse_device))] = setting(
        None, "Edge TPU device: usb, usb:N, pci or pci:N (default: the first one)", "device"
    )


class SourcesSection(Section):
    """``[sources]``: what to capture from (one of camera, targets, picamera) and how."""

    camera: int | None = setting(None, "camera index (default 0 when no source is given)", "camera", ge=0)
    targets: Annotated[Strings, AfterValidator(_checked(_check_source))] = setting(
        (),
        "video file, image folder, rtsp:// / http:// stream URL, camera index or picamera:N; repeatable for several cameras in one "
        "process (NAME=TARGET names one: its log file, status, snapshots and states carry the name)",
        "source",
    )
    picamera: bool = setting(False, "Raspberry Pi CSI camera through picamera2 (camera selects which)", "picamera")
    width: int | None = setting(None, "capture width requested from a camera", "width", ge=1)
    height: int | None = setting(None, "capture height requested from a camera", "height", ge=1)
    fps: float | None = setting(None, "capture rate requested from a camera (paces folders with realtime)", "fps", gt=0)
    realtime: bool = setting(False, "pace video files and folders at their native rate (newest frame wins)", "realtime")
    loop: bool = setting(False, "start a video file or folder again at its end", "loop")
    recursive: bool = setting(False, "with an image folder: also read its subfolders (a class-per-folder dataset); records name each file", "recursive")
    decode: Literal["full", "reduced"] = setting(
        "full",
        "full: decode every frame at full size; reduced: decode MJPEG files, streams and USB cameras at 1/2, 1/4 or 1/8 scale, the "
        "least that covers the model input times its measured margin (manifest decode.cover, check-decode) and every fractional "
        "zone, unless zones are given in pixels; a window, the web view, snapshots "
        "and collecting decode in full only the frames they use: less CPU, slightly other scores",
        "decode",
    )
    open_timeout: float = setting(10.0, "seconds to wait for a camera or stream to open", "open_timeout", gt=0)
    watchdog: float = setting(5.0, "seconds a live source may give no frame before its capture is abandoned and reopened", "watchdog", gt=0)


class ClassificationSection(Section):
    """``[classification]``: what is reported per frame, zones and debounced states."""

    top_k: int = setting(3, "how many classes to report per frame", "top_k", ge=1, le=100)
    threshold: float | None = setting(
        None,
        "report classes with at least this score (0-1); default: the running model's own, followed on a model swap: its "
        "manifest's threshold, else min(0.2, 100/classes) (0.2 for up to 500 classes)",
        "threshold", ge=0.0, le=1.0,
    )
    smoothing: float = setting(1.0, "EMA alpha over frames in (0, 1]: lower is smoother, 1 is off", "smoothing", gt=0.0, le=1.0)
    zones: Annotated[Strings, AfterValidator(_checked(zone_parts))] = setting(
        (),
        "classify this zone NAME:X,Y,W,H (fractions of the frame, or pixels) instead of the centre crop; repeatable, "
        "each zone with its own smoothing, state, log field, overlay box and MQTT topic",
        "zone",
    )
    debounce: int | None = setting(
        None,
        "a state changes only after N consecutive results agree on a top label above threshold; "
        "records carry the state and its dwell (default 1 with --zone, else no state)",
        "debounce", ge=1, le=10_000,
    )


class LogSection(Section):
    """``[log]``: one record per frame appended to a JSONL or CSV file."""

    path: OptPath = setting(None, "append one record per frame to this file", "log")
    format: Literal["jsonl", "csv"] | None = setting(None, "jsonl or csv (default: from the log file's suffix, .jsonl or .csv)", "log_format")
    changes_only: bool = setting(False, "log only frames whose top-1 label changed", "log_changes_only")
    max_bytes: int = setting(10_000_000, "rotate the log file at this size (log.1 .. log.5 are kept)", "log_max_bytes", ge=1024)


class SnapshotsSection(Section):
    """``[snapshots]``: annotated JPEGs on label changes (and high scores)."""

    dir: OptPath = setting(None, "folder for annotated JPEG snapshots, saved when the top-1 label changes", "snapshots")
    max: int = setting(100, "keep at most this many snapshots (oldest deleted first)", "snapshot_max", ge=1)
    min_score: float | None = setting(
        None, "also save frames whose top-1 score reaches this (0-1), at most every snapshot_interval", "snapshot_min_score", ge=0.0, le=1.0
    )
    interval: float = setting(10.0, "seconds between snapshots saved for snapshot_min_score", "snapshot_interval", ge=0.0)


class CollectSection(Section):
    """``[collect]``: candidate training frames saved for review."""

    dir: OptPath = setting(
        None,
        "save candidate training frames (zone crops with --zone) into DIR/inbox for review: on an interval, on label "
        "changes and when unsure, near-duplicates skipped; reviewed images go to DIR/train/<class>",
        "collect",
    )
    interval: float = setting(60.0, "collect: seconds between frames saved anyway", "collect_interval", gt=0.0)
    min_gap: float = setting(1.0, "collect: at least this many seconds between two saves of a zone", "collect_min_gap", ge=0.0)
    below: float = setting(0.5, "collect: save frames whose top score is below this (0-1)", "collect_below", ge=0.0, le=1.0)
    max_files: int = setting(1000, "collect: pause when the inbox holds this many images", "collect_max_files", ge=1)
    max_mb: float = setting(500.0, "collect: pause when the inbox holds this many megabytes", "collect_max_mb", gt=0.0)


class HttpSection(Section):
    """``[http]``: the web server (live view, API, health, metrics)."""

    listen: Annotated[Text | None, AfterValidator(_checked(parse_hostport))] = setting(
        None,
        "serve the live view, /api/status, /healthz and /metrics on [HOST:]PORT (a bare port is 127.0.0.1 only; 0.0.0.0:PORT for every interface)",
        "http",
    )
    token: Text | None = setting(None, "require ?token=... or Authorization: Bearer ... on the web server", "http_token")
    hosts: Strings = setting(
        (),
        "also answer web requests whose Host is this name (repeatable; the bound address, localhost and this machine's "
        "names always are; '*.example.com' for a domain); other Host names get 400 (DNS rebinding)",
        "http_hosts",
    )


class MqttSection(Section):
    """``[mqtt]``: results published to an MQTT broker."""

    url: Annotated[Text | None, AfterValidator(_checked(BrokerURL.parse))] = setting(
        None, "publish results to an MQTT broker, e.g. mqtt://host:1883", "mqtt"
    )
    prefix: Text = setting("edge-app", "MQTT topic prefix (topics are PREFIX/DEVICE/classification, /status, /availability)", "mqtt_prefix")
    device: Text | None = setting(None, "device name in MQTT topics (default: the host name)", "mqtt_device")
    every: int = setting(0, "also publish every Nth frame (0: only top-1 label changes)", "mqtt_every", ge=0)


class RunSection(Section):
    """``[run]``: the window, when to stop, and how often to log stats."""

    headless: bool = setting(False, "no window: log, snapshots, web and MQTT only", "headless")
    max_frames: int | None = setting(None, "stop after this many frames", "max_frames", ge=1)
    duration: float | None = setting(None, "stop after this many seconds", "duration", gt=0)
    stats_interval: float = setting(10.0, "seconds between stats log lines (0: off)", "stats_interval", ge=0.0)


class AppConfig(BaseModel):
    """Settings of ``edge-app``: one section per TOML table; ``load_config`` reads files and flags into one."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: ModelSection = Field(default_factory=ModelSection)
    sources: SourcesSection = Field(default_factory=SourcesSection)
    classification: ClassificationSection = Field(default_factory=ClassificationSection)
    log: LogSection = Field(default_factory=LogSection)
    snapshots: SnapshotsSection = Field(default_factory=SnapshotsSection)
    collect: CollectSection = Field(default_factory=CollectSection)
    http: HttpSection = Field(default_factory=HttpSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    run: RunSection = Field(default_factory=RunSection)

    @model_validator(mode="after")
    def _between_keys(self) -> AppConfig:
        """Checks that involve two keys (or the file system): a ConfigError naming both."""
        src, http = self.sources, self.http
        if src.camera is not None and src.targets:
            raise ConfigError("camera and source are mutually exclusive: set only one of them (a file's choice is replaced by --camera/--source)")
        if src.picamera and src.targets:
            raise ConfigError("picamera and source are mutually exclusive: picamera with camera = N opens CSI camera N")
        if http.token is not None and http.listen is None:
            raise ConfigError('[http] token is set but [http] listen is not: add listen = "0.0.0.0:8080" (--http) or remove the token')
        if http.hosts and http.listen is None:
            raise ConfigError('[http] hosts is set but [http] listen is not: add listen = "0.0.0.0:8080" (--http) or remove the hosts')
        if self.model.seed is not None and self.model.path is None:
            raise ConfigError("[model] seed is set but [model] path is not: set path = DIR (the folder to create, e.g. /var/lib/edge-app/model)")
        if self.model.url is not None and self.model.path is None:
            raise ConfigError("[model] url needs [model] path = DIR: the local folder the published bundle is kept in (writable)")
        log = self.log
        if log.path is not None and log.format is None and log.path.suffix.lower() not in LOG_EXTENSIONS:
            raise ConfigError(f"cannot tell the log format from {log.path.name!r}: name the file .jsonl or .csv, or set [log] format (--log-format)")
        self.source_specs()  # bad targets and names used twice
        check_zone_names(self.classification.zones)  # names used twice
        return self

    @classmethod
    def from_flags(cls, **flags: Any) -> AppConfig:
        """A config from settings by flag name, as Python code and tests write them: ``AppConfig.from_flags(source="a.mp4", top_k=1)``."""
        from edge_app.config.loading import with_flags  # noqa: PLC0415 - loading imports this module

        return with_flags(cls(), flags)

    # ------------------------------------------------------------------ views

    def source_spec(self) -> SourceSpec:
        """The capture spec of the first (usually the only) source: camera 0 when no source is configured."""
        return self.source_specs()[0][1]

    def source_specs(self) -> list[tuple[str, SourceSpec]]:
        """``(name, spec)`` of every source, in order; names are ``NAME=`` prefixes or made from the target (``camera0``, ``door``)."""
        if not self.sources.targets:
            return [(self._spec(None).short_name(), self._spec(None))]
        specs: list[tuple[str, SourceSpec]] = []
        seen: set[str] = set()
        for item in self.sources.targets:
            given, target = (None, item) if Path(item).expanduser().exists() else split_source_name(item)  # a path is never split at its =
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

    def _spec(self, target: str | None) -> SourceSpec:
        s = self.sources
        return spec_from_args(
            camera=s.camera,
            source=target,
            picamera=s.picamera,
            width=s.width,
            height=s.height,
            fps=s.fps,
            loop=s.loop,
            realtime=s.realtime,
            recursive=s.recursive,
            open_timeout_s=s.open_timeout,
            read_timeout_s=s.watchdog,
        )

    def flat(self) -> dict[str, Any]:
        """Every setting by its flag name (``top_k``, ``mqtt_prefix``): the form of ``--check-config`` and the old top-level keys."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            values = getattr(self, section)
            for key, info in type(values).model_fields.items():
                out[flag_of(info)] = getattr(values, key)
        return out

    def changed(self) -> dict[str, Any]:
        """The settings (by flag name) whose value differs from the default: what a file or flags set."""
        defaults = AppConfig().flat()
        return {k: v for k, v in self.flat().items() if v != defaults[k]}

    def describe(self) -> list[str]:
        """``key = value`` lines (flag names) for every setting that is not the default (secrets masked)."""
        lines = []
        for key, value in self.changed().items():
            shown = "***" if key in SECRET_FLAGS else redact_url(value) if key in URL_FLAGS and isinstance(value, str) else value
            lines.append(f"{key} = {shown}")
        return lines


def flag_of(info: Any) -> str:
    """The flag name (= old top-level key) of a section field."""
    extra = info.json_schema_extra
    assert isinstance(extra, dict), "every config field is declared with setting()"
    return str(extra["flag"])


SECTIONS: dict[str, type[Section]] = {
    name: info.annotation for name, info in AppConfig.model_fields.items() if isinstance(info.annotation, type) and issubclass(info.annotation, Section)
}
