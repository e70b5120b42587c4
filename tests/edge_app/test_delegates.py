"""Delegates: the real runtime's load_delegate on a machine without a Coral, and the cpu/edgetpu/auto logic
with a fake loader standing in for the Coral (the only fake: no Edge TPU exists here)."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_app.delegates
from edge_app.delegates import (
    NO_EDGETPU,
    Acceleration,
    choose,
    default_threads,
    edgetpu_library,
    edgetpu_model,
    load_classifier,
    load_edgetpu,
    parse_device,
)
from edge_app.errors import ConfigError, DelegateError, ExitCode
from edge_app.model import Classifier, resolve_model


class FakeCoral:
    """Stands in for libedgetpu: records what was asked, returns a token delegate or raises like the real one."""

    def __init__(self, present: bool = True) -> None:
        self.present = present
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, library: str, options: dict[str, str]) -> object:
        self.calls.append((library, dict(options)))
        if not self.present:
            raise ValueError(f"Failed to load delegate from {library}\n")
        return ("edgetpu-delegate", options.get("device"))


def test_device_strings() -> None:
    assert [parse_device(d) for d in ("usb", "usb:0", "PCI:1", " pci ", ":0", None)] == ["usb", "usb:0", "pci:1", "pci", ":0", None]
    for bad in ("usb0", "tpu", "usb:", ":", "", "usb:x"):
        with pytest.raises(ConfigError, match="Edge TPU device must be usb, usb:N, pci, pci:N or :N"):
            parse_device(bad)


def test_library_name_per_os() -> None:
    assert edgetpu_library("Linux") == "libedgetpu.so.1"
    assert edgetpu_library("Darwin") == "libedgetpu.1.dylib"
    assert edgetpu_library("Windows") == "edgetpu.dll"


def test_real_runtime_without_a_coral_raises_the_one_line_error(capfd) -> None:
    with pytest.raises(DelegateError) as info:
        load_edgetpu("usb:0")
    assert str(info.value) == NO_EDGETPU and info.value.exit_code == ExitCode.DELEGATE
    gc.collect()
    assert "Exception ignored" not in capfd.readouterr().err  # the half-built delegate's cleanup noise is swallowed


def test_edgetpu_model_from_manifest_or_beside_the_model(model_copy: Path) -> None:
    files = resolve_model(model_copy)
    assert edgetpu_model(files) == model_copy / "model_edgetpu.tflite"
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["edgetpu_model"] = "compiled/tpu.tflite"
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    assert edgetpu_model(resolve_model(model_copy)) == model_copy / "compiled" / "tpu.tflite"


def test_cpu_never_touches_the_loader(model_copy: Path) -> None:
    coral = FakeCoral()
    assert choose("cpu", resolve_model(model_copy), loader=coral) == Acceleration("cpu", model_copy / "model.tflite")
    assert coral.calls == []


def test_edgetpu_with_a_coral_uses_the_compiled_model_and_the_device(model_copy: Path) -> None:
    shutil.copy(model_copy / "model.tflite", model_copy / "model_edgetpu.tflite")
    coral = FakeCoral()
    acc = choose("edgetpu", resolve_model(model_copy), device="usb:1", loader=coral)
    assert acc.name == "edgetpu" and acc.model_path == model_copy / "model_edgetpu.tflite"
    assert list(acc.delegates) == [("edgetpu-delegate", "usb:1")]
    assert coral.calls == [(edgetpu_library(), {"device": "usb:1"})]
    choose("auto", resolve_model(model_copy), loader=coral)
    assert coral.calls[-1] == (edgetpu_library(), {})  # no device: the first Edge TPU


def test_edgetpu_without_a_coral_fails_and_auto_falls_back_with_a_warning(model_copy: Path, caplog) -> None:
    shutil.copy(model_copy / "model.tflite", model_copy / "model_edgetpu.tflite")
    files = resolve_model(model_copy)
    with pytest.raises(DelegateError, match=r"^No Edge TPU found: plug in the Coral USB stick \(and install libedgetpu1-std\) or run with --delegate cpu$"):
        choose("edgetpu", files, loader=FakeCoral(present=False))
    with caplog.at_level(logging.WARNING, logger="edge_app.delegates"):
        acc = choose("auto", files, loader=FakeCoral(present=False))
    assert acc == Acceleration("cpu", model_copy / "model.tflite")
    assert any("no Edge TPU found" in r.getMessage() and "running on the CPU" in r.getMessage() for r in caplog.records)


def test_a_coral_without_a_compiled_model(model_copy: Path, caplog) -> None:
    files = resolve_model(model_copy)
    with pytest.raises(DelegateError, match=r"there is no Edge TPU model .*model_edgetpu.tflite: compile the model with `edgetpu_compiler"):
        choose("edgetpu", files, loader=FakeCoral())
    with caplog.at_level(logging.WARNING, logger="edge_app.delegates"):
        assert choose("auto", files, loader=FakeCoral()).name == "cpu"
    assert any("running on the CPU" in r.getMessage() for r in caplog.records)


def test_auto_without_a_coral_gives_a_working_cpu_classifier(model_copy: Path, cifar10_val) -> None:
    files = resolve_model(model_copy)
    classifier, acc = load_classifier(files, "auto", loader=FakeCoral(present=False), threads=1)
    assert acc.name == "cpu"
    reference = Classifier(files, 1)
    frames = [np.ascontiguousarray(img[:, :, ::-1]) for img in cifar10_val.x[:8]]  # BGR
    assert [classifier.classify(f)[0].id for f in frames] == [reference.classify(f)[0].id for f in frames]


def test_bad_delegate_name() -> None:
    with pytest.raises(ConfigError, match="--delegate must be one of cpu, edgetpu, auto, got 'gpu'"):
        choose("gpu", resolve_model(None))


def test_default_threads_are_the_usable_cores_at_most_four() -> None:
    assert default_threads() == min(4, len(os.sched_getaffinity(0)))
    code = "from edge_app.delegates import default_threads; print(default_threads())"
    one_core = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert one_core.stdout.strip() == "1"  # a service pinned to one core gets one interpreter thread


def test_default_threads_follow_the_models_measured_invoke_time(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """--threads' default times the real model on one thread: under the bar it keeps one, above it takes the usable cores."""
    files = resolve_model(None)
    caplog.set_level(logging.DEBUG, logger="edge_app.delegates")
    monkeypatch.setattr(edge_app.delegates, "ONE_THREAD_BELOW_MS", 1e6)  # every model is "fast"
    fast, _ = load_classifier(files)
    assert fast.threads == 1
    monkeypatch.setattr(edge_app.delegates, "ONE_THREAD_BELOW_MS", 0.0)  # every model is "slow"
    slow, _ = load_classifier(files)
    assert slow.threads == default_threads()
    timed = [r.getMessage() for r in caplog.records if "invoke() takes" in r.getMessage()]
    if default_threads() > 1:  # decided from two real measurements
        assert len(timed) == 2 and "one interpreter thread" in timed[0] and f"{default_threads()} interpreter threads" in timed[1]
    explicit, _ = load_classifier(files, threads=3)  # asked for: no measurement, no override
    assert explicit.threads == 3
    frame = np.zeros((48, 64, 3), np.uint8)
    assert fast.classify(frame)[0].id == slow.classify(frame)[0].id == explicit.classify(frame)[0].id
