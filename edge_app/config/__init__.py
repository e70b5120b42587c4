"""``AppConfig``: every setting of the frame loop, in sections, from a TOML file and/or command-line flags.

``schema`` declares the sections (pydantic models: types, ranges, choices, unknown keys forbidden), ``loading`` reads
files and flags and turns every mistake into one line naming the key, ``values`` holds the parsers of single values
(host:port, broker URL, Edge TPU device, zone) and ``sources`` the capture spec: the runtime modules (``mqtt``,
``delegates``, ``ota``, ``zones``, ``sources``, ``outputs.logsink``) import these from here, never the reverse.
"""

from __future__ import annotations

from edge_app.config.loading import FieldSpec, field_specs, from_mapping, load_config, read_toml, with_flags
from edge_app.config.schema import (
    SECTIONS,
    AppConfig,
    ClassificationSection,
    CollectSection,
    HttpSection,
    LogSection,
    ModelSection,
    MqttSection,
    RunSection,
    Section,
    SnapshotsSection,
    SourcesSection,
)
from edge_app.config.values import DELEGATES, LOG_EXTENSIONS, LOG_FORMATS, BrokerURL, parse_device, parse_hostport

__all__ = [
    "DELEGATES",
    "LOG_EXTENSIONS",
    "LOG_FORMATS",
    "SECTIONS",
    "AppConfig",
    "BrokerURL",
    "ClassificationSection",
    "CollectSection",
    "FieldSpec",
    "HttpSection",
    "LogSection",
    "ModelSection",
    "MqttSection",
    "RunSection",
    "Section",
    "SnapshotsSection",
    "SourcesSection",
    "field_specs",
    "from_mapping",
    "load_config",
    "parse_device",
    "parse_hostport",
    "read_toml",
    "with_flags",
]
