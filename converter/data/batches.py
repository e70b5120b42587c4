"""The training batches every recipe fits on: shuffled and augmented afresh each epoch."""

from __future__ import annotations

import math

import keras
import numpy as np

from converter.data.augment import alternating_flips, augment_batch, cutout_batch


class AugmentedBatches(keras.utils.PyDataset):
    """Batches of ``x`` and ``targets`` (one row per image) in a new random order every epoch, the images augmented.

    At each epoch's start the order is drawn and, with ``augment``, every image flipped (at random, or airbench's
    alternating flips with ``alt_flip_seed``) and translated by up to ``pad`` px with reflect padding, then with
    ``cutout`` a square of that many px set to ``fill``. ``skip_epochs``: the epochs already trained (``--resume``), so
    a resumed run sees the same batches as an uninterrupted one. ``dtype``: the images' type in each batch (None: as
    ``x``).
    """

    def __init__(self, x: np.ndarray, targets: np.ndarray, batch: int, *, seed: int, augment: bool = True, pad: int = 2,
                 alt_flip_seed: int | None = None, cutout: int = 0, fill: np.ndarray | None = None, skip_epochs: int = 0,
                 dtype: str | None = None) -> None:
        super().__init__()
        if len(x) != len(targets):
            raise ValueError(f"{len(x)} images but {len(targets)} targets")
        self.images, self.targets, self.batch = x, targets, batch
        self.augment, self.pad, self.alt_flip_seed, self.dtype = augment, pad, alt_flip_seed, dtype
        self.cutout, self.fill = cutout, fill
        self.rng = np.random.default_rng(seed)
        self.epoch = -1  # on_epoch_end prepares epoch self.epoch + 1
        for _ in range(skip_epochs + 1):
            self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        n = len(self.images)
        order = self.rng.permutation(n)
        x = self.images[order]
        if self.augment:
            flip = alternating_flips(n, self.epoch, self.alt_flip_seed)[order] if self.alt_flip_seed is not None else None
            x = augment_batch(x, self.rng, pad=self.pad, flip=flip)
            if self.cutout and self.fill is not None:
                x = cutout_batch(x, self.rng, self.cutout, self.fill)
        self.x = x
        self.y = self.targets[order]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = slice(i * self.batch, (i + 1) * self.batch)
        x = self.x[s]
        return (x if self.dtype is None else x.astype(self.dtype)), self.y[s]
