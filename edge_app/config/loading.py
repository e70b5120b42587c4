"""Files and flags into an ``AppConfig``, and every mistake into one line naming the key as the user wrote it.

A file is TOML with one table per section (``[mqtt]`` then ``prefix = "home"``); relative paths in it are relative to
its folder. The old flat form (``mqtt_prefix = "home"`` at the top level) still loads, with one warning line naming
the new form of each key. Flags (``--mqtt-prefix``) override the file, but only the flags given; a new choice of
camera/source/picamera replaces the file's. Unknown keys are rejected with close matches ("did you mean").
"""

from __future__ import annotations

import difflib
import logging
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import ValidationError

from edge_app.config.schema import SECTIONS, AppConfig, flag_of
from edge_app.errors import ConfigError

log = logging.getLogger(__name__)

COMMAND_LINE = "command line"
SOURCE_FLAGS = ("camera", "source", "picamera")  # one choice: a new one replaces the other two
EXAMPLE = "systemd/config.example.toml"


@dataclass(frozen=True)
class FieldSpec:
    """One setting: its flag name (also its old top-level key), where it lives, its base type and its rules."""

    name: str
    section: str
    key: str
    kind: type
    optional: bool
    default: Any
    help: str
    rules: Mapping[str, Any]  # choices, min, gt, max

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def where(self) -> str:
        """The key in a sectioned file: ``[mqtt] prefix``."""
        return f"[{self.section}] {self.key}"


@cache
def field_specs() -> dict[str, FieldSpec]:
    """Every setting by flag name (``top_k``, ``mqtt_prefix``), in section order, with its type (int, float, bool, str, Path, tuple)."""
    specs: dict[str, FieldSpec] = {}
    for section, model in SECTIONS.items():
        for key, info in model.model_fields.items():
            hint = info.annotation
            optional = type(None) in typing.get_args(hint)
            kind: Any = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
            if typing.get_origin(kind) is typing.Annotated:  # Text = Annotated[str, ...]
                kind = typing.get_args(kind)[0]
            rules: dict[str, Any] = {}
            if typing.get_origin(kind) is typing.Literal:
                rules["choices"] = tuple(typing.get_args(kind))
                kind = str
            elif typing.get_origin(kind) is tuple:
                kind = tuple
            for item in info.metadata:
                if isinstance(item, annotated_types.Ge):
                    rules["min"] = item.ge
                elif isinstance(item, annotated_types.Gt):
                    rules["gt"] = item.gt
                elif isinstance(item, annotated_types.Le):
                    rules["max"] = item.le
            name = flag_of(info)
            specs[name] = FieldSpec(name, section, key, kind, optional, info.default, info.description or "", rules)
    return specs


@cache
def _by_place() -> dict[tuple[str, str], FieldSpec]:
    return {(s.section, s.key): s for s in field_specs().values()}


# ---------------------------------------------------------------------- loading


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """The file at ``path`` (if any) with ``overrides`` (the flags actually given, by flag name: ``top_k``) on top."""
    config = AppConfig()
    if path is not None:
        config = from_mapping(read_toml(path), origin=str(path), base_dir=path.expanduser().resolve().parent)
    if overrides:
        config = with_flags(config, overrides)
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


def from_mapping(data: Mapping[str, Any], origin: str = "config", base_dir: Path | None = None) -> AppConfig:
    """A config from a parsed TOML file (sections, or the old flat keys); ``origin`` names the file in errors."""
    specs = field_specs()
    nested: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    flat: list[FieldSpec] = []

    def put(spec: FieldSpec, value: Any, written: str) -> None:
        place = (spec.section, spec.key)
        if place in names:
            raise ConfigError(f"{origin}: {names[place]} and {written} are the same setting: keep only {spec.where}")
        if spec.kind is Path and isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            value = base_dir / path if base_dir is not None and not path.is_absolute() else path
        nested.setdefault(spec.section, {})[spec.key] = value
        names[place] = written

    places = _by_place()
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub, item in value.items():
                spec = places.get((key, sub))
                if spec is None:
                    raise ConfigError(_unknown_in_section(key, sub, origin))
                put(spec, item, spec.where)
        elif key in specs:
            flat.append(specs[key])
            put(specs[key], value, key)
        elif key in SECTIONS:
            raise ConfigError(f"{origin}: {key} must be a table: write [{key}] on a line of its own and its keys below it, got {key} = {value!r}")
        else:
            raise ConfigError(_unknown_key(key, origin))
    if flat:
        moves = ", ".join(f"{s.name} -> {s.where}" for s in flat)
        log.warning("%s: top-level keys are deprecated, move them into sections (see %s): %s", origin, EXAMPLE, moves)
    return _validate(nested, origin, names)


def with_flags(config: AppConfig, flags: Mapping[str, Any], origin: str = COMMAND_LINE) -> AppConfig:
    """``config`` with settings given by flag name (``{"top_k": 5, "source": ["a.mp4"]}``) on top; errors name the flags."""
    specs = field_specs()
    nested: dict[str, dict[str, Any]] = config.model_dump()
    names: dict[tuple[str, str], str] = {}
    if any(k in flags for k in SOURCE_FLAGS):
        for name in SOURCE_FLAGS:
            spec = specs[name]
            nested[spec.section][spec.key] = spec.default
    for name, value in flags.items():
        given = specs.get(name)
        if given is None:
            close = difflib.get_close_matches(name, list(specs), n=1)
            raise ConfigError(f"unknown setting {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        nested[given.section][given.key] = value
        names[(given.section, given.key)] = given.flag if origin == COMMAND_LINE else name
    return _validate(nested, origin, names)


# ---------------------------------------------------------------------- one-line errors


def _validate(nested: Mapping[str, Any], origin: str, names: Mapping[tuple[str, str], str]) -> AppConfig:
    try:
        return AppConfig.model_validate(nested)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc.errors()[0], origin, names)) from None
    except ConfigError as exc:  # a check between keys (AppConfig._between_keys)
        raise ConfigError(f"{origin}: {exc}") from None


def _one_line(error: Any, origin: str, names: Mapping[tuple[str, str], str]) -> str:
    loc = tuple(str(p) for p in error["loc"])
    where = "" if origin == COMMAND_LINE else f"{origin}: "
    if len(loc) < 2:
        return f"{where}[{loc[0] if loc else 'config'}] {error['msg']}"
    section, key = loc[0], loc[1]
    spec = _by_place().get((section, key))
    if spec is None:  # extra_forbidden: a key given to AppConfig from Python code
        return _unknown_in_section(section, key, origin)
    name = names.get((section, key), spec.where)
    return f"{where}{name} {_what(spec, error)}"


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path (string)", tuple: "a list of strings"}


def _what(spec: FieldSpec, error: Any) -> str:
    kind, value, rules = error["type"], error.get("input"), spec.rules
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        shown = float(value) if spec.kind is float and isinstance(value, int | float) else value
        lower = f">= {rules['min']}" if "min" in rules else f"> {rules['gt']}" if "gt" in rules else ""
        upper = f"<= {rules['max']}" if "max" in rules else ""
        return f"must be {' and '.join(b for b in (lower, upper) if b)}, got {shown!r}"
    if kind == "literal_error":
        return f"must be one of {', '.join(rules['choices'])}, got {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "empty":
        return "is empty: set a value or leave the key out"
    if kind == "invalid":
        return str(error["msg"])
    if kind == "strings_type":
        return f'must be a list of strings (TOML: {spec.key} = ["...", "..."]), got {value!r}'
    if kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        return f"must be {TYPE_NAMES.get(spec.kind, spec.kind.__name__)}, got {'nothing' if value is None else repr(value)}"
    return str(error["msg"])


def _hint(close: list[str]) -> str:
    return f"did you mean {' or '.join(close)}?" if close else f"see {EXAMPLE} for every key"


def _unknown_key(key: str, origin: str) -> str:
    """A top-level key that is neither a section nor an old flat key: the closest settings, named in their sections."""
    specs = field_specs()
    wanted = str(key).replace("-", "_")
    close = difflib.get_close_matches(wanted, [*SECTIONS, *specs], n=3, cutoff=0.6)
    shown = [f"[{c}]" if c in SECTIONS else f"{specs[c].key!r} in [{specs[c].section}]" for c in close]  # 'threshold' in [classification]
    return f"{origin}: unknown key {key!r} ({_hint(shown)}); sections: {', '.join(f'[{s}]' for s in SECTIONS)}"


def _unknown_in_section(section: str, key: str, origin: str) -> str:
    """A key a section does not have: its close keys, or the section it belongs in."""
    places = _by_place()
    own = sorted(k for s, k in places if s == section)
    wanted = str(key).replace("-", "_")
    close = [repr(c) for c in difflib.get_close_matches(wanted, own, n=3, cutoff=0.6)]
    if not close:
        close = sorted({s.where for s in field_specs().values() if s.section != section and wanted in (s.key, s.name)})[:3]
    return f"{origin}: unknown key {key!r} in [{section}] ({_hint(close)}); [{section}] keys: {', '.join(own)}"
