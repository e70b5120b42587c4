"""Zones x smoothing x debounce: one frame's model input(s) -> its smoothed top-k and per-zone results.

Each source has a ``ZoneState``: one ``ScoreSmoother`` and one ``Debouncer`` per zone (or one for the whole frame,
whose state is only reported with ``--debounce``). ``ZoneClassifier`` runs the model on each zone's input, smooths its
scores, takes the top-k above the threshold in force (the user's, else the running model's) and folds the top label into the zone's debounced state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_app.model import Classification, Classifier, Threshold, threshold_in_force, top_k
from edge_app.smoothing import ScoreSmoother
from edge_app.sources import Frame, SourceSpec
from edge_app.zones import WHOLE_FRAME, Debouncer, Zone, ZoneResult, check_zones


@dataclass
class ZoneState:
    """One source's smoothers and debounced states, one per zone (or one for the whole frame)."""

    smoothers: list[ScoreSmoother]
    debouncers: list[Debouncer]
    checked: tuple[int, int] | None = field(default=None)  # the (height, width) of camera frames its zones were found to fit

    def reset_scores(self) -> None:
        """A new capture or a new model: old scores say nothing about it."""
        for smoother in self.smoothers:
            smoother.reset()

    def reset_states(self) -> None:
        """A model with other labels: a state named by the old labels means nothing now."""
        for debouncer in self.debouncers:
            debouncer.reset()


class ZoneClassifier:
    """The zones (``--zone``), smoothing, top-k, threshold and debounce of a run; ``several``: state names carry the source's name."""

    def __init__(self, zones: Sequence[Zone], *, smoothing: float, debounce: int | None, k: int, threshold: float | None,
                 several: bool = False) -> None:
        self.zones = list(zones)
        self.smoothing = smoothing
        self.debounce = debounce
        self.k = k
        self.threshold = threshold  # the user's setting; None: the running model's own (``threshold_for``)
        self.several = several
        self.reports_states = bool(self.zones) or debounce is not None

    def new_state(self) -> ZoneState:
        """A source's state: one smoother and one debounced state per zone (or one for the whole frame)."""
        n = max(1, len(self.zones))
        return ZoneState([ScoreSmoother(self.smoothing) for _ in range(n)], [Debouncer(self.debounce or 1) for _ in range(n)])

    def state_name(self, source: str, zone: str) -> str:
        """A zone's state name: ``door``, or ``camera1.door`` when several sources run (each source has its own states)."""
        return f"{source}.{zone}" if self.several else zone

    def state_names(self, sources: Sequence[str]) -> list[str]:
        """Every state a run reports (MQTT announces them): each source's zones, or its whole frame with ``--debounce``."""
        return ([self.state_name(s, z.name) for s in sources for z in self.zones]
                or ([self.state_name(s, WHOLE_FRAME) for s in sources] if self.reports_states else []))

    def threshold_for(self, classifier: Classifier) -> Threshold:
        """The threshold in force with ``classifier`` and where it came from: the user's, else the model's (so it follows a swap)."""
        return threshold_in_force(self.threshold, classifier.threshold)

    def prepare_for(self, classifier: Classifier) -> Callable[[np.ndarray], np.ndarray]:
        """The input preparation: the centre crop, or every zone's crop stacked ``(zones, H, W, C)``."""
        if not self.zones:
            return classifier.prepare
        zones = self.zones

        def prepare(image: np.ndarray) -> np.ndarray:
            return np.stack([classifier.prepare(z.crop(image)) for z in zones])

        return prepare

    def check(self, state: ZoneState, frame: Frame, spec: SourceSpec) -> None:
        """The first frame of each size from ``spec``: a zone outside the frame is a ``ConfigError``, never silently the whole frame."""
        if self.zones:
            size = (frame.image.shape[0] * frame.scale, frame.image.shape[1] * frame.scale)
            if size != state.checked:
                check_zones(self.zones, size[0], size[1], spec.describe())
                state.checked = size

    def classify(
        self, state: ZoneState, classifier: Classifier, image: np.ndarray, frame: Frame, *, now: float, source: str,
    ) -> tuple[np.ndarray, list[Classification], list[ZoneResult]]:
        """Classify the prepared ``image`` (one input, or one per zone): the first zone's (or the frame's) smoothed scores and
        top-k, and every zone's result when states are reported (``[]`` otherwise)."""
        zones = self.zones
        inputs = image if zones else image[None]
        states: list[ZoneResult] = []
        threshold = self.threshold_for(classifier).value
        for i, (smoother, debouncer) in enumerate(zip(state.smoothers, state.debouncers, strict=True)):
            zone_scores = smoother.update(classifier.invoke(inputs[i]))
            zone_top = top_k(zone_scores, classifier.labels, self.k, threshold)
            changed_state = debouncer.update(zone_top[0].label if zone_top else None, now)
            if i == 0:
                smoothed, top = zone_scores, zone_top
            if self.reports_states:
                zone = zones[i] if zones else None
                box = zone.box(frame.image.shape[0] * frame.scale, frame.image.shape[1] * frame.scale) if zone else None  # camera px
                name = self.state_name(source, zone.name if zone else WHOLE_FRAME)
                states.append(ZoneResult(name, zone_top, debouncer.state, debouncer.dwell(now), changed_state, box))
        return smoothed, top, states
