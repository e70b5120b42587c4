"""``SourceSpec``: what a source setting names (a camera, a file, a folder, a stream) and how to open it.

Pure parsing, no OpenCV and no NumPy: ``spec_from_args`` turns ``camera`` / ``source`` / ``picamera`` into a spec,
``split_source_name`` reads a ``NAME=`` prefix. ``edge_app.sources`` (the backends) imports these from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from edge_app.errors import ConfigError

KINDS = ("opencv", "picamera2", "folder")
CSI_TARGET = re.compile(r"(?:picamera|csi):(\d+)")  # --source picamera:1 opens CSI camera 1 (two cameras on a Pi 5)
SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
DEFAULT_OPEN_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 5.0


def is_stream_url(target: object) -> bool:
    """``rtsp://...``, ``http://...`` and any other ``scheme://`` target that FFmpeg opens as a stream."""
    return isinstance(target, str) and "://" in target


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class SourceSpec:
    """What to capture from, and how.

    ``kind`` picks the backend: ``"opencv"`` (``target`` a camera index, a video file or a stream
    URL), ``"picamera2"`` (``target`` the CSI camera number) or ``"folder"`` (``target`` a folder of
    images). ``width``/``height``/``fps`` are requested from cameras (ignored for files; ``fps`` paces
    a folder when ``realtime``). ``live=None`` lets the backend decide (cameras and streams are live).
    """

    kind: str = "opencv"
    target: int | str = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    loop: bool = False
    realtime: bool = False
    live: bool | None = None
    recursive: bool = False  # folders: also read subfolders
    reduce_to: tuple[int, int] | None = None  # (h, w) the consumer needs: MJPEG may be decoded at 1/2, 1/4 or 1/8 scale
    reduce_regions: tuple[tuple[float, float], ...] = ((1.0, 1.0),)  # (h, w) fractions of the frame each given reduce_to: zones
    reduce_cover: float = 1.0  # the model's measured margin (manifest decode.cover): a JPEG decode must give this many times reduce_to
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown source kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if isinstance(self.target, Path):
            object.__setattr__(self, "target", str(self.target))
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"source {name} must be positive, got {value}: leave it unset to use the source's own")
        for name in ("open_timeout_s", "read_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"source {name} must be positive seconds, got {getattr(self, name)}")

    @property
    def is_stream(self) -> bool:
        return self.kind == "opencv" and is_stream_url(self.target)

    def short_name(self) -> str:
        """A name for logs, topics and files when several sources run: ``camera0``, ``csi1``, ``door`` (a file's stem), a stream's host."""
        if self.kind == "picamera2":
            return f"csi{self.target}"
        if isinstance(self.target, int):
            return f"camera{self.target}"
        text = (urlsplit(self.target).hostname or "stream") if self.is_stream else (Path(self.target).stem or Path(self.target).name)
        text = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:32]
        return text if text and text[0].isalpha() else f"source-{text}".rstrip("-")

    def describe(self) -> str:
        """A short human name: ``camera 0``, ``video file clip.mp4``, ``stream rtsp://...``."""
        if self.kind == "picamera2":
            return f"CSI camera {self.target}"
        if self.kind == "folder":
            return f"image folder {self.target}"
        if isinstance(self.target, int):
            return f"camera {self.target}"
        if self.is_stream:
            return f"stream {redact_url(self.target)}"
        if self.target.startswith("/dev/"):
            return f"camera {self.target}"
        return f"video file {self.target}"


def spec_from_args(
    camera: int | None = None,
    source: str | Path | None = None,
    picamera: bool = False,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    loop: bool = False,
    realtime: bool = False,
    recursive: bool = False,
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> SourceSpec:
    """The spec for ``--camera N``, ``--source PATH|URL|DIR`` or ``--picamera`` (camera 0 when none is given).

    ``--picamera`` with ``--camera N`` opens CSI camera N. A ``--source`` that is a folder reads its
    images; ``scheme://...`` is a stream; a bare number that is not an existing path is a camera index.
    """
    if source is not None and camera is not None:
        raise ConfigError("--camera and --source are mutually exclusive: pass only one of them")
    if source is not None and picamera:
        raise ConfigError("--picamera and --source are mutually exclusive: --picamera [--camera N] opens a CSI camera")

    def make(kind: str, target: int | str) -> SourceSpec:
        return SourceSpec(
            kind=kind,
            target=target,
            width=width,
            height=height,
            fps=fps,
            loop=loop,
            realtime=realtime,
            recursive=recursive,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
        )

    spec = _spec_for(make, camera, source, picamera)
    if recursive and spec.kind != "folder":
        raise ConfigError(
            f"--recursive reads the subfolders of an image folder, but the source is a {spec.describe()}: pass a folder as --source or drop --recursive"
        )
    return spec


def split_source_name(text: str) -> tuple[str | None, str]:
    """``door=rtsp://...`` -> ``("door", "rtsp://...")``; a target without a ``NAME=`` prefix -> ``(None, target)``.

    Only a leading word followed by ``=`` is a name, so URLs with query strings keep their ``=``.
    """
    name, sep, rest = text.partition("=")
    if sep and SOURCE_NAME.fullmatch(name) and rest:
        return name, rest
    return None, text


def _spec_for(make: Callable[[str, int | str], SourceSpec], camera: int | None, source: str | Path | None, picamera: bool) -> SourceSpec:
    if picamera:
        return make("picamera2", camera or 0)
    if source is None:
        return make("opencv", 0 if camera is None else int(camera))
    text = str(source)
    if not text:
        raise ConfigError("--source is empty: pass a video file, an image folder, a stream URL, or use --camera N")
    if is_stream_url(text):
        return make("opencv", text)
    csi = CSI_TARGET.fullmatch(text)
    if csi and not Path(text).exists():
        return make("picamera2", int(csi.group(1)))
    path = Path(text).expanduser()
    if text.isdigit() and not path.exists():
        return make("opencv", int(text))
    if path.is_dir():
        return make("folder", str(path))
    return make("opencv", str(path))
