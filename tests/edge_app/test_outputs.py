"""FrameResult's JSON record from real results, and every output class satisfying the Sink protocol."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from converter.data.datasets import Dataset
from edge_app.mqtt import MqttSink
from edge_app.outputs import Sink, iso_utc
from edge_app.outputs.display import DisplaySink
from edge_app.outputs.logsink import CsvLogSink, JsonlLogSink
from edge_app.outputs.snapshots import SnapshotSink
from edge_app.web import WebServer
from tests.edge_app.framekit import classify_frames


def test_json_record_of_a_real_result(cifar10_val: Dataset, default_model: Path) -> None:
    _, result = classify_frames(cifar10_val, default_model, [4321])[0]
    rec = result.to_json_dict()
    assert set(rec) == {"time", "epoch", "frame", "top", "latency_ms", "fps", "changed"}
    assert json.loads(json.dumps(rec)) == rec  # plain JSON types only (no NumPy scalars)
    assert rec["time"].endswith("Z") and datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).tzinfo == UTC
    assert rec["top"] == [{"id": c.id, "label": c.label, "score": round(c.score, 4)} for c in result.top]
    assert rec["latency_ms"] == {k: round(v, 2) for k, v in result.latency_ms.items()}
    assert result.label == result.top[0].label and result.score == result.top[0].score
    assert isinstance(result.scores, np.ndarray) and result.scores.shape == (10,)
    empty = replace(result, top=[])
    assert empty.label is None and empty.score == 0.0 and empty.to_json_dict()["top"] == []


def test_iso_utc() -> None:
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


def test_output_classes_are_sinks() -> None:
    # Checked by mypy: each class is assignable to the Sink protocol the frame loop uses.
    sinks: list[type[Sink]] = [DisplaySink, JsonlLogSink, CsvLogSink, SnapshotSink, WebServer, MqttSink]
    for cls in sinks:
        assert callable(cls.write) and callable(cls.close)
