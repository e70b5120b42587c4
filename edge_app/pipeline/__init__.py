"""The frame loop in parts; ``edge_app.app.App`` builds, starts and stops them.

- ``channel``: one source's channel: its capture thread, zone states, outputs, counters and FPS; the reduced-decode policy.
- ``zoneclassify``: zones x smoothing x debounce on one frame -> its top-k and per-zone results.
- ``modelslot``: the model: opened at start, reloaded on a thread of its own, swapped in between frames; reload waiters.
- ``fanout``: each result to every output, a failing output logged once and counted, never stopping the others.
- ``status``: the status board read by the web app, MQTT and systemd notify.
- ``loop``: round-robin over the channels -> classify -> fan out; the stats lines.
- ``build``: every output of a run (windows, snapshots, collect folders, logs, the web view, MQTT).

The parts log under ``edge_app.app`` (``LOGGER``): the run's log lines keep the name they have always had.
"""

from __future__ import annotations

LOGGER = "edge_app.app"
