"""Model definitions: the paper's CNN exactly, and an int8-friendly edge CNN.

Both take raw uint8-range pixels: normalisation lives inside the model (``Rescaling``), so the
int8 TFLite model is fed camera pixels directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
from keras import layers


def paper_cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Fig. 4 of the paper: Conv32-Pool-Conv64-Pool-Conv128-Pool, Dense 128-64-32, softmax.

    The paper's optimiser (Adam, sparse categorical cross-entropy) is set by ``compile_paper``.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(64, activation="relu"),
            layers.Dense(32, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="paper_cnn",
    )


def whitening_kernel(x: np.ndarray, size: int = 2, eps: float = 5e-4, normalise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Patch-whitening conv weights from data (the airbench trick), for pixels scaled to [0, 1].

    Returns (kernel ``(size, size, C, 2*size*size*C)``, bias): the eigenvectors of the patch
    covariance, scaled by 1/sqrt(eigenvalue + eps), and their negatives, so a ReLU keeps both signs.
    With ``normalise`` the covariance is that of per-channel normalised pixels (as airbench computes
    it, where ``eps`` is small against every eigenvalue), folded back so the conv still reads 0-1 pixels.
    """
    x = x.astype(np.float32) / 255.0
    _n, _h, _w, c = x.shape
    mean_c, std_c = np.zeros(c, np.float32), np.ones(c, np.float32)
    if normalise:
        mean_c, std_c = x.reshape(-1, c).mean(0), x.reshape(-1, c).std(0) + 1e-6
        x = (x - mean_c) / std_c
    patches = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * c)  # (.., kh, kw, c)
    mean = patches.mean(0)
    cov = np.cov(patches - mean, rowvar=False)
    eigval, eigvec = np.linalg.eigh(cov)
    basis = (eigvec / np.sqrt(eigval + eps)).T  # (k, kh*kw*c), rows whiten
    basis = basis[::-1]  # largest eigenvalue first
    kernel = np.concatenate([basis, -basis]).reshape(-1, size, size, c).transpose(1, 2, 3, 0)
    bias = -(np.concatenate([basis, -basis]) @ mean)
    # fold the normalisation: W @ ((p - m) / s) = (W / s) @ p - (W / s) @ m, per input channel
    kernel = kernel / std_c[None, None, :, None]
    bias = bias - np.einsum("hwck,c->k", kernel, mean_c)
    return kernel.astype(np.float32), bias.astype(np.float32)


@dataclass(frozen=True)
class EdgeSpec:
    widths: tuple[int, ...] = (64, 128, 128)
    whiten_size: int = 2
    logit_scale: float = 1.0 / 9.0
    weight_decay: float = 5e-4  # L2 on the kernels (0: the optimizer decays the weights, as airbench's does)
    bn_momentum: float = 0.9
    bn_scale: bool = True  # False: batch-norm weights frozen at one (airbench); they still fold into the conv
    bn_eps: float = 1e-5  # small, yet large enough that a near-constant channel folds into a finite int8 weight
    whiten_norm: bool = False  # compute the whitening on normalised pixels (airbench), see whitening_kernel
    whiten_eps: float = 5e-4
    train_whiten_bias: bool = False  # the whitening conv stays trainable; AirbenchSGD freezes its kernel and later its bias
    activation: str = "relu"  # "gelu": airbench's activation (int8 on CPU via a lookup table; the Edge TPU has no GELU)
    pool_before_bn: bool = False  # each group's first conv is pooled before its batch norm (airbench: statistics of the pooled map)


ACTIVATIONS = ("relu", "gelu")


def inference_spec(spec: EdgeSpec) -> EdgeSpec:
    """The spec whose graph computes the same function as ``spec``'s with batch norm right after each conv (foldable for int8).

    Pool-then-BN-ReLU equals BN-ReLU-then-pool when every batch-norm scale is positive, which frozen
    batch-norm weights (``bn_scale=False``) guarantee; with trained weights a scale may be negative, so the
    order stays as trained.
    """
    monotone = spec.activation == "relu"  # GELU dips below zero, so it does not commute with max pooling
    return replace(spec, pool_before_bn=False) if spec.pool_before_bn and not spec.bn_scale and monotone else spec


def network_options(model: keras.Model) -> tuple[bool, str] | None:
    """(pool_before_bn, activation) of an ``edge_cnn`` model, read from its layer order and names; None for any other model."""
    names = [layer.name for layer in model.layers]
    if not {"b0_conv0", "b0_pool", "b0_bn0"} <= set(names):
        return None
    return names.index("b0_pool") < names.index("b0_bn0"), "gelu" if "whiten_gelu" in names else "relu"


def edge_blocks_for(size: int) -> int:
    """Three conv groups at 32 px (CIFAR-10), one more for each doubling of the input."""
    return 3 + max(0, int(np.log2(max(size, 32) / 32) + 0.5))


def edge_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    spec: EdgeSpec = EdgeSpec(),
    sample: np.ndarray | None = None,
) -> keras.Model:
    """An airbench-style CNN built only from int8- and Edge-TPU-friendly ops.

    Rescaling, a 2x2 patch-whitening conv (frozen, computed from ``sample``), then conv groups
    of ``conv3x3-BN-ReLU-maxpool-conv3x3-BN-ReLU``, global max pooling, a bias-free dense layer
    and softmax. Batch norm directly follows each conv so the converter folds it; shapes are
    static. For inputs larger than 32 px, extra conv groups keep the receptive field.

    ``spec.pool_before_bn`` trains airbench's order, ``conv3x3-maxpool-BN-ReLU``: the batch norm's statistics
    are those of the pooled map. With batch-norm weights frozen at one, BN and ReLU are increasing in each
    channel and commute with max pooling, so the same weights in the default order compute the same function
    and fold for int8 (``inference_spec``).
    """
    if spec.activation not in ACTIVATIONS:
        raise ValueError(f"activation {spec.activation!r}: choose {' or '.join(ACTIVATIONS)}")
    h, w, c = input_shape
    n_blocks = edge_blocks_for(min(h, w))
    widths = list(spec.widths) + [spec.widths[-1]] * (n_blocks - len(spec.widths))
    reg = keras.regularizers.l2(spec.weight_decay) if spec.weight_decay else None
    whiten_width = 2 * spec.whiten_size * spec.whiten_size * c

    inputs = keras.Input(input_shape)
    # pixels, rescaling and whitening stay float32 under a mixed bfloat16 policy (its 8-bit mantissa
    # would round the whitened directions of the faint eigenvalues away); the conv groups run in bf16
    x = layers.Rescaling(1.0 / 255, name="rescale", dtype="float32")(inputs)
    whiten = layers.Conv2D(whiten_width, spec.whiten_size, padding="valid", name="whiten", dtype="float32")
    x = whiten(x)

    def act(prefix: str, suffix: str = "", **kw: Any) -> Any:
        name = f"{prefix}_{spec.activation}{suffix}"
        return layers.ReLU(name=name, **kw) if spec.activation == "relu" else layers.Activation("gelu", name=name, **kw)

    x = act("whiten", dtype="float32")(x)
    for i, width in enumerate(widths[:n_blocks]):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"b{i}_conv{j}")(x)
            pool_first = j == 0 and spec.pool_before_bn
            if pool_first:
                x = layers.MaxPooling2D(2, name=f"b{i}_pool")(x)
            x = layers.BatchNormalization(momentum=spec.bn_momentum, epsilon=spec.bn_eps, scale=spec.bn_scale, name=f"b{i}_bn{j}")(x)
            x = act(f"b{i}", str(j))(x)
            if j == 0 and not pool_first:
                x = layers.MaxPooling2D(2, name=f"b{i}_pool")(x)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_regularizer=reg, name="logits")(x)
    x = layers.Rescaling(spec.logit_scale, name="logit_scale")(x)
    outputs = layers.Softmax(name="probs", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="edge_cnn")

    if sample is not None:
        kernel, bias = whitening_kernel(sample, spec.whiten_size, spec.whiten_eps, normalise=spec.whiten_norm)
        whiten.set_weights([kernel, bias])
    whiten.trainable = spec.train_whiten_bias
    return model


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {"paper": paper_cnn, "edge": edge_cnn}


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (conv, depthwise conv and dense layers, nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        elif isinstance(layer, layers.DepthwiseConv2D):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            total += int(oh * ow * oc * kh * kw)
        elif isinstance(layer, layers.Conv2D):
            _, oh, ow, oc = layer.output.shape
            kh, kw = layer.kernel_size
            ic = layer.input.shape[-1] // layer.groups
            total += int(oh * ow * oc * kh * kw * ic)
        elif isinstance(layer, layers.Dense):
            total += int(layer.input.shape[-1] * layer.units)
    return total
