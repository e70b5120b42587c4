"""Exponential moving average of score vectors across frames, so the label does not flicker."""

from __future__ import annotations

import numpy as np

from edge_app.errors import ConfigError


class ScoreSmoother:
    """``smoothed = alpha * scores + (1 - alpha) * smoothed``; ``alpha=1.0`` passes scores through."""

    def __init__(self, alpha: float = 0.5) -> None:
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            raise ConfigError(f"smoothing alpha must be a number in (0, 1], got {alpha!r}; use 1.0 for no smoothing") from None
        if not 0.0 < value <= 1.0:  # also rejects NaN
            raise ConfigError(f"smoothing alpha must be in (0, 1], got {alpha!r}; lower means smoother, 1.0 means no smoothing")
        self.alpha = value
        self._state: np.ndarray | None = None

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Fold in one frame's scores and return the smoothed vector (a new float32 array)."""
        current = np.asarray(scores, dtype=np.float32).reshape(-1)
        if self._state is None or self._state.shape != current.shape or self.alpha == 1.0:
            # First frame, or a different model's output size: start afresh.
            self._state = current.copy()
        else:
            self._state = self.alpha * current + (1.0 - self.alpha) * self._state
        return self._state.copy()

    def reset(self) -> None:
        """Forget the history (e.g. after a source reconnect or a scene cut)."""
        self._state = None

    @property
    def value(self) -> np.ndarray | None:
        """The current smoothed scores, or ``None`` before the first update."""
        return None if self._state is None else self._state.copy()
