"""AppConfig: real TOML files written here and the shipped example, sections and the old flat keys, CLI overrides,
one-line errors naming the key as it was written."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_app.config import SECTIONS, AppConfig, ModelSection, MqttSection, field_specs, load_config, parse_hostport
from edge_app.errors import ConfigError, ExitCode
from edge_app.zones import parse_zone, parse_zones
from tests.edge_app.helpers import edge_app, one_error_line


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sections_of(text: str) -> dict[str, str]:
    """The text of every ``[section]`` of a TOML file (comments included), by name."""
    parts = re.split(r"^\[(\w+)\]\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_example_config_loads_in_sections_and_documents_every_key(repo_root: Path, tmp_path: Path, caplog) -> None:
    example = repo_root / "systemd" / "config.example.toml"
    with caplog.at_level(logging.WARNING):
        config = load_config(example)
    assert not caplog.records, "the shipped example uses no deprecated keys"
    assert config.run.headless and config.sources.camera == 0 and config.model.delegate == "cpu"
    assert config.log.path == Path("/var/log/edge-app/results.jsonl") and config.log.changes_only
    c = config.classification
    # threshold unset: each model's own (the ImageNet default's 0.1, not a fixed 0.2 that hid a quarter of its pet photos)
    assert (c.top_k, c.threshold, c.smoothing, config.log.max_bytes) == (3, None, 0.5, 10_000_000)
    spec = config.source_spec()
    assert (spec.kind, spec.target, spec.width, spec.height, spec.read_timeout_s) == ("opencv", 0, 640, 480, 5.0)
    text = example.read_text()
    assert all(isinstance(v, dict) for v in tomllib.loads(text).values()), "every key of the example is in a section"
    sections = sections_of(text)
    assert list(sections) == list(SECTIONS)
    for spec in field_specs().values():  # every key appears in its section, set or commented out, with its flag
        body = sections[spec.section]
        assert f"\n{spec.key} = " in "\n" + body or f"\n# {spec.key} = " in "\n" + body, f"{spec.where} is not documented in the example"
        assert spec.flag in body or spec.section == "collect", f"{spec.where}: the example does not name {spec.flag}"
    # uncommenting the optional keys still loads (their example values are valid)
    keys = {(s.section, s.key) for s in field_specs().values()}
    lines, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        key = line[2:].split(" = ")[0] if line.startswith("# ") and " = " in line else ""
        lines.append(line[2:] if (section, key) in keys else line)
    uncommented = "\n".join(ln for ln in lines if not ln.startswith(("camera =", "picamera =")))
    full = load_config(write(tmp_path, uncommented))
    assert full.sources.targets and full.sources.targets[0].startswith("rtsp://") and full.http.listen == "0.0.0.0:8080"
    assert full.model.device == "usb:0" and full.mqtt.device == "kitchen-pi" and full.run.max_frames == 1000
    assert full.snapshots.dir == Path("/var/lib/edge-app/snapshots") and full.classification.zones == ("door:0.55,0.10,0.35,0.60",)


def test_defaults_and_types() -> None:
    config = AppConfig()
    assert (config.model.delegate, config.classification.top_k, config.classification.threshold) == ("cpu", 3, None)  # None: the model's
    assert (config.classification.smoothing, config.run.stats_interval, config.mqtt.prefix) == (1.0, 10.0, "edge-app")
    assert config.source_spec().target == 0 and config.changed() == {} and config.describe() == []
    kinds = {name: spec.kind for name, spec in field_specs().items()}
    assert kinds["model"] is Path and kinds["top_k"] is int and kinds["fps"] is float and kinds["headless"] is bool and kinds["source"] is tuple
    assert field_specs()["delegate"].rules["choices"] == ("cpu", "edgetpu", "auto")
    assert field_specs()["top_k"].rules == {"min": 1, "max": 100} and field_specs()["mqtt_prefix"].where == "[mqtt] prefix"
    assert len(field_specs()) == 51 and len({s.flag for s in field_specs().values()}) == 51


def test_sections_are_frozen_strict_and_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs"):
        ModelSection.model_validate({"path": "m", "colour": "red"})
    with pytest.raises(ValidationError):
        MqttSection.model_validate({"every": "3"})  # strict: a string is not an integer
    config = AppConfig.model_validate({"mqtt": {"url": "mqtt://broker:1883", "every": 5}})
    assert config.mqtt.every == 5 and config == AppConfig.from_flags(mqtt="mqtt://broker:1883", mqtt_every=5)
    with pytest.raises(ValidationError):
        config.mqtt.every = 6  # type: ignore[misc]
    with pytest.raises(ConfigError, match="camera and source are mutually exclusive"):
        AppConfig.model_validate({"sources": {"camera": 1, "targets": ["a.mp4"]}})


def test_file_values_are_typed_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    text = '[model]\npath = "models/mine"\n[log]\npath = "/tmp/x.csv"\n[sources]\ntargets = ["clip.mp4"]\nfps = 15\nloop = true\n'
    path = write(tmp_path, text + '[snapshots]\ndir = "~/shots"\n')
    config = load_config(path)
    assert config.model.path == tmp_path / "models" / "mine" and config.log.path == Path("/tmp/x.csv")
    assert config.sources.fps == 15.0 and isinstance(config.sources.fps, float) and config.sources.loop
    assert config.snapshots.dir == Path.home() / "shots"
    assert config.sources.targets == ("clip.mp4",)  # a source may be a URL or camera number: left as written
    assert load_config(write(tmp_path, '[sources]\ntargets = "one.mp4"\n', "one.toml")).sources.targets == ("one.mp4",)


def test_flags_override_only_what_they_set(tmp_path: Path) -> None:
    path = write(tmp_path, "[classification]\ntop_k = 5\nthreshold = 0.3\n[sources]\ncamera = 1\n[run]\nheadless = true\n")
    config = load_config(path, {"threshold": 0.6, "source": "clip.mp4", "headless": False})
    assert (config.classification.top_k, config.classification.threshold, config.run.headless) == (5, 0.6, False)
    assert (config.sources.camera, config.sources.targets) == (None, ("clip.mp4",))  # --source replaces the file's camera
    assert load_config(path, {"picamera": True}).sources.camera is None
    assert load_config(path, {}).sources.camera == 1
    flagged = load_config(path, {"mqtt": "mqtt://b:1883", "mqtt_prefix": "home", "log": "rel/out.jsonl"})
    assert (flagged.mqtt.url, flagged.mqtt.prefix) == ("mqtt://b:1883", "home")
    assert flagged.log.path == Path("rel/out.jsonl")  # a flag's relative path is the working folder's, not the file's


def test_old_flat_keys_load_the_same_with_one_warning_line(tmp_path: Path, caplog) -> None:
    flat = write(tmp_path, 'top_k = 5\nmqtt = "mqtt://broker:1883"\nmqtt_prefix = "home"\nlog = "out/r.jsonl"\nsource = ["a.mp4"]\n', "flat.toml")
    sectioned = write(
        tmp_path,
        '[classification]\ntop_k = 5\n[mqtt]\nurl = "mqtt://broker:1883"\nprefix = "home"\n[log]\npath = "out/r.jsonl"\n[sources]\ntargets = ["a.mp4"]\n',
        "sections.toml",
    )
    with caplog.at_level(logging.WARNING):
        old = load_config(flat)
    assert old == load_config(sectioned) and old.log.path == tmp_path / "out" / "r.jsonl"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(flat) in warnings[0]
    assert "mqtt_prefix -> [mqtt] prefix" in warnings[0] and "mqtt -> [mqtt] url" in warnings[0] and "source -> [sources] targets" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(sectioned)
    assert not caplog.records


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # sections
        ("[classification]\nthresold = 0.5\n", r"unknown key 'thresold' in \[classification\] \(did you mean 'threshold'\?\); \[classification\] keys: deb"),
        ("[classification]\nheadless = true\n", r"unknown key 'headless' in \[classification\] \(did you mean \[run\] headless\?\)"),
        ("[classification]\ntop-k = 5\n", r"unknown key 'top-k' in \[classification\] \(did you mean 'top_k'\?\)"),
        ("[mqtt]\nmqtt_prefix = 'x'\n", r"unknown key 'mqtt_prefix' in \[mqtt\] \(did you mean 'prefix'\?\)"),
        ("[classification]\ntop_k = 0\n", r": \[classification\] top_k must be >= 1 and <= 100, got 0$"),
        ("[classification]\nsmoothing = 0\n", r"\[classification\] smoothing must be > 0.0 and <= 1.0, got 0.0$"),
        ("[mqtt]\nurl = 'broker:1883'\n", r"\[mqtt\] url is invalid: bad MQTT broker URL 'broker:1883': unknown scheme 'broker'"),
        ("[log]\npath = 'results.log'\n", r"cannot tell the log format from 'results.log': name the file .jsonl or .csv, or set \[log\] format"),
        ("[http]\ntoken = 'x'\n", r"\[http\] token is set but \[http\] listen is not"),
        ("[model]\nurl = 'https://models.example.com/b/'\n", r"\[model\] url needs \[model\] path = DIR"),
        ("[classification]\nzones = ['a:0,0,0.5,0.5', 'a:0.5,0,0.5,0.5']\n", r"zone name\(s\) used twice: a"),
        ("[classification]\nzones = ['door']\n", r"\[classification\] zones is invalid: zone 'door' has no name"),
        ("[sources]\ntargets = ['door=a.mp4', 'door=b.mp4']\n", r"source name 'door' is used twice"),
        ("[run]\nheadless = 1\n", r"\[run\] headless must be true or false, got 1$"),
        ("sources = 3\n", r"sources must be a table: write \[sources\] on a line of its own"),
        ("[colour]\nred = 1\n", r"unknown key 'colour' \(see systemd/config.example.toml for every key\); sections: \[model\], \[sources\]"),
        ("top_k = 3\n[classification]\ntop_k = 4\n", r"top_k and \[classification\] top_k are the same setting: keep only \[classification\] top_k"),
        # the old flat keys: errors name them as written
        ("thresold = 0.5\n", r"unknown key 'thresold' \(did you mean 'threshold' in \[classification\]"),
        ("top-k = 5\n", r"unknown key 'top-k' \(did you mean 'top_k' in \[classification\]\?\)"),
        ("snapshot_maxx = 5\n", r"unknown key 'snapshot_maxx' \(did you mean 'max' in \[snapshots\]"),
        ("top_k = 0\n", r": top_k must be >= 1 and <= 100, got 0$"),
        ("top_k = 2.5\n", r"top_k must be an integer, got 2.5$"),
        ("threshold = 1.5\n", r"threshold must be >= 0.0 and <= 1.0, got 1.5$"),
        ("threshold = 'high'\n", r"threshold must be a number, got 'high'$"),
        ("smoothing = 0\n", r"smoothing must be > 0.0 and <= 1.0, got 0.0$"),
        ("headless = 1\n", r"headless must be true or false, got 1$"),
        ("camera = true\n", r"camera must be an integer, got True$"),
        ("fps = nan\n", r"fps must be a finite number"),
        ("delegate = 'gpu'\n", r"delegate must be one of cpu, edgetpu, auto, got 'gpu'$"),
        ("device = 'usb0'\n", r"device is invalid: Edge TPU device must be usb, usb:N, pci, pci:N or :N"),
        ("http = 'localhost'\n", r"http is invalid: expected HOST:PORT"),
        ("http = '0.0.0.0:70000'\n", r"http is invalid"),
        ("mqtt = 'broker:1883'\n", r"mqtt is invalid: bad MQTT broker URL 'broker:1883': unknown scheme 'broker'; expected e.g. mqtt://host:1883"),
        ("log_format = 'xml'\n", r"log_format must be one of jsonl, csv, got 'xml'$"),
        ("log_max_bytes = 10\n", r"log_max_bytes must be >= 1024, got 10$"),
        ("log = ''\n", r": log is empty: set a value or leave the key out$"),
        ("mqtt_prefix = ''\n", r": mqtt_prefix is empty: set a value or leave the key out$"),
        ("model = 3\n", r": model must be a path \(string\), got 3$"),
        ("camera = 0\nsource = 'a.mp4'\n", r"camera and source are mutually exclusive"),
        ("http_token = 'x'\n", r"\[http\] token is set but \[http\] listen is not"),
        ("[source]\npath = 'a.mp4'\n", r"source must be a list of strings .*got \{'path': 'a.mp4'\}"),
        ("top_k = \n", r"is not valid TOML: .*line 1"),
    ],
)
def test_bad_files_fail_with_one_line_naming_the_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"config file {path}" if "TOML" in words else f"{path}: ")
    assert info.value.exit_code == ExitCode.CONFIG


def test_bad_flags_are_named_as_flags() -> None:
    with pytest.raises(ConfigError, match=r"^--top-k must be >= 1 and <= 100, got 0$"):
        load_config(None, {"top_k": 0})
    with pytest.raises(ConfigError, match=r"^--snapshot-min-score must be >= 0.0 and <= 1.0, got -1.0$"):
        load_config(None, {"snapshot_min_score": -1.0})
    with pytest.raises(ConfigError, match=r"^--mqtt-every must be an integer, got 'x'$"):
        load_config(None, {"mqtt_every": "x"})
    with pytest.raises(ConfigError, match=r"^command line: camera and source are mutually exclusive"):
        load_config(None, {"camera": 1, "source": ["a.mp4"]})


def test_missing_unreadable_and_folder_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope.toml does not exist: check the path given to --config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"not UTF-8|not valid TOML"):
        load_config(binary)


def test_describe_masks_secrets_and_names_settings_by_flag() -> None:
    config = load_config(None, {"http": "127.0.0.1:0", "http_token": "s3cret", "mqtt": "mqtt://u:pw@broker:1883", "top_k": 1})
    text = "\n".join(config.describe())
    assert "s3cret" not in text and "pw" not in text and "http_token = ***" in text and "top_k = 1" in text
    assert "mqtt = mqtt://u:***@broker:1883" in text and config.changed()["http"] == "127.0.0.1:0"


def test_zones_are_parsed_by_the_config_syntax() -> None:
    zone = parse_zone("door:0.6,0.1,0.3,0.5")
    assert (zone.name, zone.x, zone.w, zone.fractional) == ("door", 0.6, 0.3, True)
    assert not parse_zone("gate:380,40,200,260").fractional
    with pytest.raises(ConfigError, match="zone name\\(s\\) used twice: a"):
        parse_zones(["a:0,0,1,1", "a:0,0,0.5,0.5"])
    with pytest.raises(ConfigError, match="give exactly four numbers"):
        parse_zone("door:0.1,0.2,nan,0.3")


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    # a bare port never serves beyond this machine: every interface is asked for by name
    assert parse_hostport(":9000") == ("127.0.0.1", 9000)
    assert parse_hostport("8080") == ("127.0.0.1", 8080)
    assert parse_hostport("0.0.0.0:8080") == ("0.0.0.0", 8080)  # noqa: S104
    assert parse_hostport("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("host:http")


def test_the_config_imports_no_runtime_module() -> None:
    """mqtt, ota, delegates, zones, sources and the log sink import their parsers from the config, never the reverse."""
    code = "import sys, edge_app.config; print(' '.join(sorted(m for m in sys.modules if m.startswith(('edge_app', 'numpy', 'cv2')))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded and all(m in {"edge_app", "edge_app.errors"} or m.startswith("edge_app.config") for m in loaded), loaded


def test_the_cli_runs_an_old_flat_file_with_one_warning_line_and_rejects_a_typo_in_a_section(tmp_path: Path, write_video, cifar10_val) -> None:
    video = write_video(tmp_path / "clip.avi", cifar10_val.x[:12], size=(64, 48))
    log = tmp_path / "out.jsonl"
    old = write(tmp_path, f'source = "{video}"\nheadless = true\ntop_k = 2\nlog = "{log}"\nstats_interval = 0.0\n', "old.toml")
    result = edge_app("--config", str(old), "-q")
    assert result.returncode == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if "deprecated" in ln]
    assert len(warnings) == 1 and "top_k -> [classification] top_k" in warnings[0] and "source -> [sources] targets" in warnings[0]
    records = [ln for ln in log.read_text().splitlines() if ln]
    assert len(records) == 12 and all(len(json.loads(r)["top"]) <= 2 for r in records)
    typo = write(tmp_path, "[classification]\ntop_k = 2\nthresold = 0.2\n", "typo.toml")
    bad = edge_app("--check-config", "--config", str(typo))
    assert bad.returncode == ExitCode.CONFIG and "deprecated" not in bad.stderr
    assert one_error_line(bad) == f"edge-app: error: {typo}: unknown key 'thresold' in [classification] (did you mean 'threshold'?); " \
        "[classification] keys: debounce, smoothing, threshold, top_k, zones"
