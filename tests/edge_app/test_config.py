"""AppConfig: real TOML files written here and the shipped example, CLI overrides, one-line errors by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.config import AppConfig, field_specs, load_config, parse_hostport
from edge_app.errors import ConfigError, ExitCode


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_config_loads_and_documents_every_key(repo_root: Path, tmp_path: Path) -> None:
    example = repo_root / "systemd" / "config.example.toml"
    config = load_config(example)
    assert config.headless and config.camera == 0 and config.delegate == "cpu"
    assert config.log == Path("/var/log/edge-app/results.jsonl") and config.log_changes_only
    assert (config.top_k, config.threshold, config.smoothing, config.log_max_bytes) == (3, 0.2, 0.5, 10_000_000)
    spec = config.source_spec()
    assert (spec.kind, spec.target, spec.width, spec.height, spec.read_timeout_s) == ("opencv", 0, 640, 480, 5.0)
    text = example.read_text()
    for key in field_specs():  # every key appears, set or commented out
        assert f"\n{key} = " in text or f"\n# {key} = " in text, f"{key} is not documented in the example"
    # uncommenting the optional keys still loads (their example values are valid)
    lines = [ln[2:] if ln.startswith("# ") and " = " in ln and ln[2:].split(" = ")[0] in field_specs() else ln for ln in text.splitlines()]
    uncommented = "\n".join(ln for ln in lines if not ln.startswith(("camera =", "picamera =")))
    full = load_config(write(tmp_path, uncommented))
    assert full.source and full.source[0].startswith("rtsp://") and full.http == "0.0.0.0:8080" and full.device == "usb:0"
    assert full.mqtt_device == "kitchen-pi" and full.max_frames == 1000 and full.snapshots == Path("/var/lib/edge-app/snapshots")


def test_defaults_and_types() -> None:
    config = AppConfig()
    assert (config.delegate, config.top_k, config.threshold, config.smoothing, config.stats_interval) == ("cpu", 3, 0.0, 1.0, 10.0)
    assert config.source_spec().target == 0 and config.changed() == {}
    kinds = {name: spec.kind for name, spec in field_specs().items()}
    assert kinds["model"] is Path and kinds["top_k"] is int and kinds["fps"] is float and kinds["headless"] is bool


def test_file_values_are_typed_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "models/mine"\nlog = "/tmp/x.csv"\nsource = "clip.mp4"\nfps = 15\nloop = true\nsnapshots = "~/shots"\n')
    config = load_config(path)
    assert config.model == tmp_path / "models" / "mine" and config.log == Path("/tmp/x.csv")
    assert config.fps == 15.0 and isinstance(config.fps, float) and config.loop
    assert config.snapshots == Path.home() / "shots"
    assert config.source == ("clip.mp4",)  # a source may be a URL or camera number: left as written


def test_flags_override_only_what_they_set(tmp_path: Path) -> None:
    path = write(tmp_path, "top_k = 5\nthreshold = 0.3\ncamera = 1\nheadless = true\n")
    config = load_config(path, {"threshold": 0.6, "source": "clip.mp4", "headless": False})
    assert (config.top_k, config.threshold, config.headless) == (5, 0.6, False)
    assert (config.camera, config.source) == (None, ("clip.mp4",))  # --source replaces the file's camera
    assert load_config(path, {"picamera": True}).camera is None
    assert load_config(path, {}).camera == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("thresold = 0.5\n", r"unknown key 'thresold' \(did you mean 'threshold'"),
        ("top-k = 5\n", r"unknown key 'top-k' \(did you mean 'top_k'\?\)"),
        ("colour = 'red'\n", r"unknown key 'colour' \(see systemd/config.example.toml for every key\); known keys: camera, collect, collect_below"),
        ("top_k = 0\n", r"top_k must be >= 1 and <= 100, got 0"),
        ("top_k = 2.5\n", r"top_k must be an integer, got 2.5"),
        ("threshold = 1.5\n", r"threshold must be >= 0.0 and <= 1.0, got 1.5"),
        ("threshold = 'high'\n", r"threshold must be a number, got 'high'"),
        ("smoothing = 0\n", r"smoothing must be > 0.0 and <= 1.0, got 0.0"),
        ("headless = 1\n", r"headless must be true or false, got 1"),
        ("camera = true\n", r"camera must be an integer, got True"),
        ("fps = nan\n", r"fps must be a finite number"),
        ("delegate = 'gpu'\n", r"delegate must be one of cpu, edgetpu, auto, got 'gpu'"),
        ("device = 'usb0'\n", r"device is invalid: Edge TPU device must be usb, usb:N, pci, pci:N or :N"),
        ("http = 'localhost'\n", r"http is invalid: expected HOST:PORT"),
        ("http = '0.0.0.0:70000'\n", r"http is invalid"),
        ("mqtt = 'broker:1883'\n", r"mqtt is invalid: bad MQTT broker URL 'broker:1883': unknown scheme 'broker'; expected e.g. mqtt://host:1883"),
        ("log_format = 'xml'\n", r"log_format must be one of jsonl, csv, got 'xml'"),
        ("log_max_bytes = 10\n", r"log_max_bytes must be >= 1024, got 10"),
        ("log = ''\n", r"log is empty: set a value or leave the key out"),
        ("model = 3\n", r"model must be a path \(string\), got 3"),
        ("camera = 0\nsource = 'a.mp4'\n", r"camera and source are mutually exclusive"),
        ("http_token = 'x'\n", r"http_token is set but http is not"),
        ("log = 'results.log'\n", r"cannot tell the log format from 'results.log': name the file .jsonl or .csv, or set log_format"),
        ("[source]\npath = 'a.mp4'\n", r"source must be a list of strings .*got \{'path': 'a.mp4'\}"),
        ("top_k = \n", r"is not valid TOML: .*line 1"),
    ],
)
def test_bad_files_fail_with_one_line_naming_the_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and info.value.exit_code == ExitCode.CONFIG


def test_bad_flags_are_named_as_flags() -> None:
    with pytest.raises(ConfigError, match=r"^--top-k must be >= 1 and <= 100, got 0$"):
        load_config(None, {"top_k": 0})
    with pytest.raises(ConfigError, match=r"^--snapshot-min-score must be >= 0.0 and <= 1.0, got -1.0$"):
        load_config(None, {"snapshot_min_score": -1.0})


def test_missing_unreadable_and_folder_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope.toml does not exist: check the path given to --config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"not UTF-8|not valid TOML"):
        load_config(binary)


def test_describe_masks_secrets() -> None:
    config = load_config(None, {"http": "127.0.0.1:0", "http_token": "s3cret", "mqtt": "mqtt://u:pw@broker:1883", "top_k": 1})
    text = "\n".join(config.describe())
    assert "s3cret" not in text and "pw" not in text and "http_token = ***" in text and "top_k = 1" in text


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    # a bare port never serves beyond this machine: every interface is asked for by name
    assert parse_hostport(":9000") == ("127.0.0.1", 9000)
    assert parse_hostport("8080") == ("127.0.0.1", 8080)
    assert parse_hostport("0.0.0.0:8080") == ("0.0.0.0", 8080)  # noqa: S104
    assert parse_hostport("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("host:http")
