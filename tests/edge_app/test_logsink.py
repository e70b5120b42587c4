"""Result logs written from real results (the shipped model on real CIFAR-10 validation frames):
round trips, rotation, changes-only, a real full device (/dev/full and, where mounting is allowed,
a tiny tmpfs), and a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from converter.data.datasets import Dataset
from edge_app.errors import ConfigError, ExitCode, OutputError
from edge_app.outputs import FrameResult
from edge_app.outputs.logsink import LOG_FORMATS, CsvLogSink, JsonlLogSink, make_log_sink
from tests.edge_app.framekit import classify_frames
from tests.edge_app.helpers import read_jsonl

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)
NO_PIXELS = np.empty((0, 0, 3), np.uint8)  # a log sink never looks at the pixels


@pytest.fixture(scope="module")
def results(cifar10_val: Dataset, default_model: Path) -> list[FrameResult]:
    """Real results for 60 validation images from all classes (small frames: only the results matter here)."""
    picks = list(range(0, len(cifar10_val), len(cifar10_val) // 60))[:60]
    return [r for _, r in classify_frames(cifar10_val, default_model, picks, size=(64, 64))]


def test_jsonl_round_trip(tmp_path: Path, results: list[FrameResult]) -> None:
    path = tmp_path / "deep" / "er" / "log.jsonl"  # parent folders are created
    sink = JsonlLogSink(path)
    for r in results:
        sink.write(NO_PIXELS, r)
    sink.close()
    records = read_jsonl(path)
    assert len(records) == len(results) == sink.written
    for rec, r in zip(records, results, strict=True):
        assert rec["frame"] == r.index
        assert [t["label"] for t in rec["top"]] == [c.label for c in r.top]
        assert [t["id"] for t in rec["top"]] == [c.id for c in r.top]
        assert rec["top"][0]["score"] == pytest.approx(r.top[0].score, abs=1e-4)
        assert datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp() == pytest.approx(r.time, abs=0.001)
        assert rec["epoch"] == pytest.approx(r.time, abs=0.001)
        assert rec["latency_ms"]["invoke"] == round(r.latency_ms["invoke"], 2)
        assert rec["fps"] == round(r.fps, 2) and rec["changed"] == r.changed


def test_csv_round_trip_with_one_header(tmp_path: Path, results: list[FrameResult]) -> None:
    path = tmp_path / "log.csv"
    for chunk in (results[:25], results[25:]):  # a restart appends without a second header
        sink = CsvLogSink(path)
        for r in chunk:
            sink.write(NO_PIXELS, r)
        sink.close()
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CsvLogSink.COLUMNS)
    assert sum(line.startswith("time,") for line in lines) == 1
    rows = list(csv.DictReader(path.open(newline="")))
    assert len(rows) == len(results)
    for row, r in zip(rows, results, strict=True):
        assert int(row["frame"]) == r.index
        assert row["label"] == r.top[0].label
        assert float(row["score"]) == pytest.approx(r.top[0].score, abs=1e-4)
        assert [p.split(":")[0] for p in row["top"].split("|")] == [c.label for c in r.top]
        assert float(row["invoke_ms"]) == pytest.approx(r.latency_ms["invoke"], abs=0.01)
        assert row["capture_ms"] == ""  # not measured here: left empty, not invented
        assert row["changed"] == str(int(r.changed))


def test_csv_with_other_columns_is_moved_aside(tmp_path: Path, results: list[FrameResult]) -> None:
    path = tmp_path / "log.csv"
    path.write_text("a,b\n1,2\n")
    sink = CsvLogSink(path)
    sink.write(NO_PIXELS, results[0])
    sink.close()
    assert (tmp_path / "log.csv.1").read_text() == "a,b\n1,2\n"
    assert path.read_text().startswith("time,epoch,frame,")


def test_changes_only(tmp_path: Path, results: list[FrameResult]) -> None:
    path = tmp_path / "changes.jsonl"
    sink = JsonlLogSink(path, changes_only=True)
    for r in results:
        sink.write(NO_PIXELS, r)
    sink.close()
    changed = [r.index for r in results if r.changed]
    assert 1 < len(changed) < len(results)
    assert [rec["frame"] for rec in read_jsonl(path)] == changed


@pytest.mark.parametrize("cls", [JsonlLogSink, CsvLogSink])
def test_rotation_keeps_n_bounded_files_of_whole_lines(tmp_path: Path, results: list[FrameResult], cls) -> None:
    path = tmp_path / ("log.jsonl" if cls is JsonlLogSink else "log.csv")
    sink = cls(path, max_bytes=3000, backups=2)
    for n in range(200):
        sink.write(NO_PIXELS, replace(results[n % len(results)], index=n))
    sink.close()
    files = [path, path.with_name(path.name + ".1"), path.with_name(path.name + ".2")]
    assert all(f.exists() for f in files) and not path.with_name(path.name + ".3").exists()
    assert sink.rotations > 2 and sink.written == 200
    frames: list[int] = []
    for f in reversed(files):  # oldest first
        assert f.stat().st_size <= 3000
        if cls is JsonlLogSink:
            frames += [rec["frame"] for rec in read_jsonl(f)]
        else:
            frames += [int(row["frame"]) for row in csv.DictReader(f.open(newline=""))]
    assert frames == list(range(frames[0], 200))  # consecutive, newest last, nothing lost across a rotation


def test_no_backups_means_start_over(tmp_path: Path, results: list[FrameResult]) -> None:
    path = tmp_path / "log.jsonl"
    sink = JsonlLogSink(path, max_bytes=2000, backups=0)
    for r in results:
        sink.write(NO_PIXELS, r)
    sink.close()
    assert list(tmp_path.iterdir()) == [path]
    assert read_jsonl(path)[-1]["frame"] == results[-1].index


def test_make_log_sink_by_extension_and_name(tmp_path: Path) -> None:
    assert set(LOG_FORMATS) == {"jsonl", "csv"}
    for name, cls in [("a.jsonl", JsonlLogSink), ("b.json", JsonlLogSink), ("c.NDJSON", JsonlLogSink), ("d.csv", CsvLogSink)]:
        sink = make_log_sink(tmp_path / name)
        assert type(sink) is cls
        sink.close()
    sink = make_log_sink(tmp_path / "e.log", "csv", changes_only=True, max_bytes=1000)
    assert type(sink) is CsvLogSink and sink.changes_only and sink.max_bytes == 1000
    sink.close()
    with pytest.raises(ConfigError, match=r"cannot tell the log format from 'f\.txt'.*\.jsonl or \.csv"):
        make_log_sink(tmp_path / "f.txt")
    with pytest.raises(ConfigError, match="unknown log format 'xml'; expected one of: jsonl, csv"):
        make_log_sink(tmp_path / "g.jsonl", "xml")
    with pytest.raises(ConfigError, match="max_bytes"):
        make_log_sink(tmp_path / "h.jsonl", max_bytes=0)
    with pytest.raises(ConfigError, match="backups"):
        make_log_sink(tmp_path / "i.jsonl", backups=-1)


def test_unopenable_log_is_a_one_line_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file" / "log.jsonl", tmp_path):
        with pytest.raises(OutputError) as info:
            JsonlLogSink(bad)
        message = str(info.value)
        assert message.startswith(f"cannot open log file {bad}: ") and "\n" not in message and "writable" in message
        assert info.value.exit_code == ExitCode.OUTPUT


def test_full_disk_drops_records_logs_once_and_recovers(tmp_path: Path, results: list[FrameResult], caplog) -> None:
    path = tmp_path / "log.jsonl"
    path.symlink_to("/dev/full")  # a real device that answers every write with ENOSPC
    sink = JsonlLogSink(path, retry_s=0.2, fsync=True)
    caplog.set_level(logging.INFO, logger="edge_app.outputs.logsink")
    t = time.perf_counter()
    for r in results[:20]:
        sink.write(NO_PIXELS, r)  # never raises
    assert time.perf_counter() - t < 1.0
    assert sink.dropped == 20 and sink.written == 0
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0].getMessage()
    path.unlink()  # space is back
    time.sleep(0.3)
    for r in results[20:30]:
        sink.write(NO_PIXELS, r)
    sink.close()
    assert sink.written == 10 and sink.dropped == 20
    assert [rec["frame"] for rec in read_jsonl(path)] == [r.index for r in results[20:30]]
    assert "writable again; 20 record(s) were dropped" in caplog.text


def test_disk_filling_up_never_leaves_a_broken_line(tmp_path: Path, results: list[FrameResult]) -> None:
    """A real 16 KiB tmpfs (where mounting is allowed): short writes at the end are cut back off."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); the /dev/full test covers write errors")
    try:
        path = mnt / "log.jsonl"
        sink = JsonlLogSink(path, retry_s=0.0)
        for n in range(300):
            sink.write(NO_PIXELS, replace(results[n % len(results)], index=n))
        sink.close()
        assert sink.dropped > 0 and sink.written > 10
        data = path.read_bytes()
        assert data.endswith(b"\n")
        records = [json.loads(line) for line in data.splitlines()]
        assert len(records) == sink.written
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


WRITER = """
import pickle, sys
import numpy as np
from pathlib import Path
from dataclasses import replace
from edge_app.outputs.logsink import make_log_sink
results = pickle.loads(Path(sys.argv[1]).read_bytes())
sink = make_log_sink(Path(sys.argv[2]), max_bytes=200_000, backups=3)
n = 0
no_pixels = np.empty((0, 0, 3), np.uint8)
while True:
    sink.write(no_pixels, replace(results[n % len(results)], index=n))
    n += 1
"""


@pytest.mark.parametrize("name", ["killed.jsonl", "killed.csv"])
def test_sigkill_mid_stream_leaves_only_whole_lines(tmp_path: Path, results: list[FrameResult], name: str) -> None:
    pickled = tmp_path / "results.pkl"
    pickled.write_bytes(pickle.dumps(results))
    path = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(pickled), str(path)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not path.with_name(name + ".1").exists():  # let it rotate at least once
            assert proc.poll() is None, "writer died"
            assert time.monotonic() < deadline, "writer wrote nothing"
            time.sleep(0.02)
        time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    frames: list[int] = []
    for part in (path.with_name(name + ".1"), path):  # the newest backup, then the file the kill cut (maybe just rotated: empty)
        data = part.read_bytes()
        assert not data or data.endswith(b"\n")
        if name.endswith(".jsonl"):
            frames += [json.loads(line)["frame"] for line in data.splitlines()]
        else:
            frames += [int(row["frame"]) for row in csv.DictReader(data.decode().splitlines())]
    assert frames and frames == list(range(frames[0], frames[0] + len(frames)))
