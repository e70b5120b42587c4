"""The settings of a CNN training run (``train-model --arch paper|edge``)."""

from __future__ import annotations

from dataclasses import dataclass

from converter.models.cnn import EdgeSpec
from converter.training.airbench import AirbenchHyper, resolve_features


@dataclass
class TrainConfig:
    arch: str = "edge"
    epochs: int = 16
    batch_size: int | None = None  # paper: 32, edge: 256 (classic) or 1024 (airbench)
    lr: float | None = None  # paper: Adam's 1e-3; edge: peak SGD rate 0.2 (classic) or airbench's 11.5 per 1024 examples
    recipe: str = "classic"  # edge: "airbench" (converter.training.airbench) or "classic" (the recipe of the first shipped model)
    without: tuple[str, ...] = ()  # airbench features left out (ablation)
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.2
    augment: bool | None = None  # flip+translate; default: on for edge, off for paper (the paper's recipe)
    translate: int | None = None  # edge: px of random reflect translation (default: 2 at 32 px, size / 16 above)
    cutout: int = 0  # edge: a random square of this many px per side set to the data's mean colour (airbench96's Cutout); 0: none
    precision: str = "auto"
    seed: int = 0
    widths: tuple[int, ...] = (64, 128, 128)
    activation: str = "relu"  # edge: "gelu" for airbench's activation (CPU int8 only: the Edge TPU has no GELU)
    pool_before_bn: bool = False  # edge, airbench recipe: airbench's conv-group order (max pool, then batch norm); saved foldable
    ema: bool = True  # edge: validate and checkpoint an exponential moving average of the weights
    init_from: str | None = None  # transfer learning: start from the matching layers of this .keras model
    resume: bool = False  # continue the interrupted run in the output folder from its resume.keras
    teacher: tuple[str, ...] = ()  # edge: distil from these models' averaged probabilities (converter.training.distill)
    distill_weight: float = 0.7  # the teachers' share of each soft target, the rest the one-hot label
    distill_temperature: float = 2.0

    def augments(self) -> bool:
        return self.arch == "edge" if self.augment is None else self.augment

    def resolved_batch(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 32 if self.arch == "paper" else AirbenchHyper.batch_size if self.airbench() else 256

    def airbench(self) -> bool:
        return self.arch == "edge" and self.recipe == "airbench"

    def features(self) -> frozenset[str]:
        """The airbench features on in this run (none for the classic recipe and the paper's CNN)."""
        return resolve_features(self.without) if self.airbench() else frozenset()

    def edge_spec(self) -> EdgeSpec:
        if not self.airbench():
            return EdgeSpec(widths=self.widths, activation=self.activation)
        on = self.features()
        bn = "bn-bias-lr" in on
        return EdgeSpec(widths=self.widths, activation=self.activation, weight_decay=0.0, bn_momentum=0.6 if bn else 0.9, bn_scale=not bn,
                        whiten_norm="whiten-norm" in on, train_whiten_bias="whiten-norm" in on, pool_before_bn=self.pool_before_bn)
