"""Learning-rate schedules, registered with Keras so that a saved model (``resume.keras``) loads with its optimizer."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="edge_recognition")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start * peak`` to ``peak`` over ``warm`` steps, then linear decay to ``end * peak`` at ``total``."""

    def __init__(self, peak: float, warm: int, total: int, start: float = 0.1, end: float = 0.0) -> None:
        self.peak, self.warm, self.total, self.start, self.end = peak, warm, total, start, end

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        up = self.peak * (self.start + (1.0 - self.start) * step / self.warm)
        frac = keras.ops.minimum(1.0, (step - self.warm) / max(1, self.total - self.warm))
        down = self.peak * (1.0 - (1.0 - self.end) * frac)
        return keras.ops.where(step < self.warm, up, down)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warm": self.warm, "total": self.total, "start": self.start, "end": self.end}


def warmup_linear_decay(peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> WarmupLinearDecay:
    """The classic recipe's schedule: ``warmup_epochs`` of warm-up, then decay to zero at the last step."""
    total = steps_per_epoch * epochs
    return WarmupLinearDecay(peak, max(1, int(steps_per_epoch * warmup_epochs)), total)
