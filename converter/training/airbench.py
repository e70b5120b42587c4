"""airbench's training features for the edge CNN, each one switchable (``train-model --without FEATURE``).

The recipe follows Keller Jordan's airbench94 (batch 1024, Nesterov SGD with momentum 0.85, learning
rate and weight decay expressed per 1024 examples, warm-up over 23 % of the steps from 0.2x to the
peak, then linear decay to 0.07x, label smoothing 0.2, final weights) with its five largest features:

* ``bn-bias-lr``: batch-norm biases learn 64x faster (decay not scaled), batch-norm weights frozen at
  one, batch-norm momentum 0.6;
* ``dirac``: each 3x3 conv starts as the identity on its first input channels;
* ``lookahead``: every 5 steps the weights, batch-norm statistics included, are pulled towards (and
  replaced by) their running average, on a cubic schedule, and end as that average;
* ``alt-flip``: each image is flipped at random once, then flipped the other way on every other
  epoch (instead of a fresh coin each epoch), with 2 px reflect translation;
* ``whiten-norm``: the patch-whitening conv is computed on per-channel normalised pixels (then folded
  back onto 0-1 pixels) and its bias trains for the first 3 epochs.

airbench's conv-group order (max pooling before the first batch norm) and its GELU are architecture
options of the edge CNN (``train-model --pool-before-bn``, ``--activation gelu``, converter.models.cnn),
off by default: neither measured better here (docs/ablation.md).

Everything here is ReLU, batch norm folded into the preceding conv, so the int8 and Edge TPU path is
unchanged. Keras (any backend) only: an optimizer subclass and a callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

log = logging.getLogger(__name__)

FEATURES: dict[str, str] = {
    "bn-bias-lr": "batch-norm biases at 64x the learning rate, batch-norm weights frozen, momentum 0.6",
    "dirac": "identity initialisation of each 3x3 conv's first input channels",
    "lookahead": "lookahead weight averaging, batch-norm statistics included",
    "alt-flip": "alternating horizontal flips across epochs",
    "whiten-norm": "whitening on normalised pixels, its bias trained for the first epochs",
}


@dataclass(frozen=True)
class AirbenchHyper:
    """airbench94's hyperparameters, in its decoupled form (per 1024 examples)."""

    batch_size: int = 1024
    lr_per_1024: float = 11.5
    momentum: float = 0.85
    weight_decay_per_1024: float = 0.0153
    bias_scaler: float = 64.0
    warmup_fraction: float = 0.23
    start_factor: float = 0.2
    end_factor: float = 0.07
    whiten_bias_epochs: int = 3
    lookahead_every: int = 5
    lookahead_base: float = 0.95**5
    epochs: int = 10

    def lr(self, batch: int) -> float:
        """The peak rate for Keras's SGD on the batch-mean loss (airbench's torch SGD runs on the batch sum)."""
        return self.lr_per_1024 * batch / (1024 * (1 + 1 / (1 - self.momentum)))

    def decay(self) -> float:
        """Weight decay added to the gradient, relative to the learning rate: ``lr * decay`` shrinks a weight per step."""
        return self.weight_decay_per_1024 / self.lr_per_1024


def resolve_features(without: tuple[str, ...] | list[str]) -> frozenset[str]:
    """All features less ``without``; an unknown name is a clear error naming the known ones."""
    unknown = [name for name in without if name not in FEATURES]
    if unknown:
        from converter.errors import DataError  # noqa: PLC0415

        raise DataError(f"--without {','.join(unknown)}: unknown feature; choose from {', '.join(FEATURES)}")
    return frozenset(FEATURES) - frozenset(without)


def _is_bn_beta(path: str) -> bool:
    layer, _, name = path.rpartition("/")
    return name == "beta" and "_bn" in layer


@keras.saving.register_keras_serializable(package="edge_recognition")
class AirbenchSGD(keras.optimizers.SGD):
    """Nesterov SGD with airbench's parameter groups.

    Every trainable weight decays by ``learning_rate * decay`` a step (through the momentum, as torch's
    ``weight_decay`` does); batch-norm biases (``*_bn*/beta``) take ``bias_scale`` times the learning rate
    with the same decay; the whitening conv's kernel never moves and its bias only for the first
    ``whiten_bias_steps`` steps.
    """

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.85, nesterov: bool = True, *, decay: float = 0.0,
                 bias_scale: float = 1.0, whiten_bias_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)
        self.decay = decay
        self.bias_scale = bias_scale
        self.whiten_bias_steps = whiten_bias_steps

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        path = self._trainable_variables[self._get_variable_index(variable)].path  # the backend may pass its own variable
        if path.startswith("whiten/"):
            if not path.endswith("bias"):
                return  # the whitening kernel is computed from data, never trained
            gate = ops.cast(ops.less(self.iterations, self.whiten_bias_steps), variable.dtype)
            gradient = ops.cast(gradient, variable.dtype) * gate
            learning_rate = ops.cast(learning_rate, variable.dtype) * gate
        scale, decay = (self.bias_scale, self.decay / self.bias_scale) if _is_bn_beta(path) else (1.0, self.decay)
        if decay:
            gradient = ops.add(ops.cast(gradient, variable.dtype), ops.multiply(variable, ops.cast(decay, variable.dtype)))
        super().update_step(gradient, variable, ops.multiply(ops.cast(learning_rate, variable.dtype), scale))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay": self.decay, "bias_scale": self.bias_scale,
                "whiten_bias_steps": self.whiten_bias_steps}


class Lookahead(keras.callbacks.Callback):
    """airbench's lookahead: every ``every`` steps, average = lerp(average, weights, 1 - decay), weights = average.

    ``decay`` rises as ``base * (step / total) ** 3``; at the last step the weights become the average.
    All float weights take part, batch-norm moving statistics included (Keras's EMA averages only the
    trainable ones). With ``state`` the average is saved at the start of each epoch, beside the resume
    point, and read back when a resumed run starts.
    """

    def __init__(self, total_steps: int, every: int = 5, base: float = 0.95**5, state: Path | None = None) -> None:
        super().__init__()
        self.total, self.every, self.base, self.state = total_steps, every, base, state
        self.average: list[np.ndarray] | None = None
        self.step = 0

    def _weights(self) -> list[Any]:
        return [w for w in self.model.weights if "float" in str(w.dtype)]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        weights = self._weights()
        if self.step and self.state is not None and self.state.is_file():
            with np.load(self.state) as saved:
                self.average = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            if [a.shape for a in self.average] != [tuple(w.shape) for w in weights]:
                raise ValueError(f"{self.state} does not match this model; start the run again without --resume")
        else:
            self.average = [ops.convert_to_numpy(w).copy() for w in weights]

    def update(self, decay: float) -> None:
        assert self.average is not None
        for i, w in enumerate(self._weights()):
            self.average[i] += (1.0 - decay) * (ops.convert_to_numpy(w) - self.average[i])
            w.assign(self.average[i])

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self.update(self.base * (min(self.step, self.total) / self.total) ** 3)
        if self.step == self.total:
            self.update(1.0)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.state is None or self.average is None:
            return
        tmp = self.state.with_name(self.state.stem + ".tmp.npz")
        np.savez(tmp, *self.average)
        tmp.replace(self.state)


def dirac_init(model: keras.Model) -> int:
    """Make each 3x3 conv start as the identity on its first input channels (airbench's ``dirac_``); the count changed."""
    done = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3) and layer.name != "whiten":
            kernel = ops.convert_to_numpy(layer.kernel).copy()
            n = min(kernel.shape[2], kernel.shape[3])
            kernel[:, :, :, :n] = 0.0
            kernel[1, 1, np.arange(n), np.arange(n)] = 1.0
            layer.kernel.assign(kernel)
            done += 1
    return done
