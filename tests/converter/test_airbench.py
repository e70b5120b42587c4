"""airbench's training features, each checked on its own (converter/airbench.py, the edge spec in converter/models.py)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from converter.data.augment import alternating_flips
from converter.data.datasets import Dataset
from converter.errors import DataError
from converter.models.cnn import EdgeSpec, edge_cnn, inference_spec, whitening_kernel
from converter.training.airbench import FEATURES, AirbenchHyper, AirbenchSGD, Lookahead, dirac_init, resolve_features
from converter.training.config import TrainConfig

AIRBENCH_SPEC = EdgeSpec(widths=(8, 16, 16), weight_decay=0.0, bn_momentum=0.6, bn_scale=False, whiten_norm=True, train_whiten_bias=True)


def _batch(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 16, 16, 3)).astype(np.float32), np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]


def _weights_after_steps(steps: int, **opt: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(weights before, after ``steps`` plain-SGD steps) of a small airbench-spec model, by variable path."""
    keras.utils.set_random_seed(0)
    x, y = _batch()
    model = edge_cnn((16, 16, 3), 4, AIRBENCH_SPEC, sample=x.astype(np.uint8))
    model.compile(optimizer=AirbenchSGD(0.05, momentum=0.0, nesterov=False, **opt), loss="categorical_crossentropy")
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}
    for _ in range(steps):
        model.train_on_batch(x, y)
    return before, {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


def test_bn_biases_take_64x_the_step_and_the_whitening_kernel_never_moves() -> None:
    before, plain = _weights_after_steps(1)
    _, scaled = _weights_after_steps(1, bias_scale=64.0)
    beta = "b0_bn0/beta"
    step_plain, step_scaled = plain[beta] - before[beta], scaled[beta] - before[beta]
    assert np.abs(step_plain).max() > 0
    np.testing.assert_allclose(step_scaled, 64.0 * step_plain, rtol=1e-3, atol=1e-7)
    kernel = "b0_conv0/kernel"  # the first step's gradient is the same, so every other weight moves alike
    np.testing.assert_allclose(scaled[kernel], plain[kernel], rtol=1e-5, atol=1e-7)
    assert "b0_bn0/gamma" not in before  # batch-norm weights frozen at one (they still fold into the conv)
    np.testing.assert_array_equal(scaled["whiten/kernel"], before["whiten/kernel"])


def test_the_whitening_bias_trains_only_for_its_steps_and_weight_decay_shrinks_the_weights() -> None:
    before, one = _weights_after_steps(1, whiten_bias_steps=1)
    _, three = _weights_after_steps(3, whiten_bias_steps=1)
    assert not np.array_equal(one["whiten/bias"], before["whiten/bias"])
    np.testing.assert_array_equal(three["whiten/bias"], one["whiten/bias"])  # frozen from step 2 (no momentum here)
    _, decayed = _weights_after_steps(1, decay=0.5)
    _, plain = _weights_after_steps(1)
    kernel = "b1_conv0/kernel"
    np.testing.assert_allclose(decayed[kernel] - plain[kernel], -0.05 * 0.5 * before[kernel], rtol=1e-3, atol=1e-6)


def test_lookahead_averages_every_weight_batch_norm_statistics_included() -> None:
    model = edge_cnn((16, 16, 3), 4, AIRBENCH_SPEC)
    model.compile(optimizer=AirbenchSGD(0.01), loss="categorical_crossentropy")
    look = Lookahead(total_steps=10, every=5, base=0.5)
    look.set_model(model)
    look.on_train_begin()
    start = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    moving = [i for i, w in enumerate(model.weights) if w.path.endswith("moving_mean")]
    assert moving  # the statistics are among the averaged weights
    for w, s in zip(model.weights, start, strict=True):
        w.assign(s + 1.0)  # as if the optimizer (and the batch statistics) had moved everything by one
    for step in range(4):
        look.on_train_batch_end(step)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.weights[moving[0]]), start[moving[0]] + 1.0)  # untouched until step 5
    look.on_train_batch_end(4)
    decay = 0.5 * (5 / 10) ** 3
    for i in (0, moving[0]):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.weights[i]), start[i] + (1 - decay), rtol=1e-5, atol=1e-6)
    for step in range(5, 10):
        look.on_train_batch_end(step)  # the last step ends on the average itself
    assert look.average is not None
    for w, avg in zip(model.weights, look.average, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), avg)


def test_alternating_flips_show_each_image_both_ways_every_two_epochs() -> None:
    first, second, third = (alternating_flips(10_000, epoch, seed=3) for epoch in range(3))
    assert 0.45 < first.mean() < 0.55
    assert not np.any(first & second) and np.all(first | second)  # each image once each way over two epochs
    np.testing.assert_array_equal(first, third)
    assert not np.array_equal(first, alternating_flips(10_000, 0, seed=4))


def test_dirac_init_makes_each_3x3_conv_the_identity_on_its_first_channels() -> None:
    model = edge_cnn((16, 16, 3), 4, AIRBENCH_SPEC)
    assert dirac_init(model) == 6
    conv = model.get_layer("b1_conv1")  # 16 -> 16 channels: the whole conv is the identity
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 16)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(x)), x, atol=1e-6)
    wider = model.get_layer("b1_conv0")  # 8 -> 16: identity on the first 8 outputs, random beyond
    kernel = keras.ops.convert_to_numpy(wider.kernel)
    np.testing.assert_array_equal(kernel[1, 1, :8, :8], np.eye(8))
    assert np.count_nonzero(kernel[:, :, :, :8]) == 8 and np.count_nonzero(kernel[:, :, :, 8:]) > 100


def test_whitening_on_normalised_pixels_keeps_more_directions_of_real_cifar10_patches(cifar10: Dataset) -> None:
    x = cifar10.x[:2000]
    patches = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32) / 255, (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    kept = {}
    for normalise in (False, True):
        kernel, bias = whitening_kernel(x, 2, 5e-4, normalise=normalise)
        out = patches @ kernel.reshape(12, 24)[:, :12] + bias[:12]  # the conv on 0-1 pixels, first sign only
        var = out.var(0)
        kept[normalise] = int(np.sum(var > 0.5))  # directions that keep at least half their unit variance
        assert np.abs(out.mean(0)).max() < 0.05  # centred
    # eps 5e-4 on 0-1 pixels flattens the faint directions (the chroma of these 4:2:0 JPEGs): 6 of 12 kept
    # (2026-12-03); on normalised pixels, as airbench computes it, 10
    assert kept[False] <= 7 and kept[True] >= kept[False] + 3


def test_the_recipe_switches_each_feature_and_rejects_unknown_ones() -> None:
    full = TrainConfig(recipe="airbench")
    assert full.features() == frozenset(FEATURES) and full.resolved_batch() == 1024
    spec = full.edge_spec()
    assert (spec.bn_momentum, spec.bn_scale, spec.whiten_norm, spec.weight_decay) == (0.6, False, True, 0.0)
    assert not spec.pool_before_bn and TrainConfig(recipe="airbench", pool_before_bn=True).edge_spec().pool_before_bn
    off = TrainConfig(recipe="airbench", without=("bn-bias-lr", "whiten-norm"))
    assert off.features() == frozenset(FEATURES) - {"bn-bias-lr", "whiten-norm"}
    assert off.edge_spec().bn_scale and not off.edge_spec().whiten_norm
    assert TrainConfig(recipe="classic").features() == frozenset() and TrainConfig(recipe="classic").resolved_batch() == 256
    assert AirbenchHyper().lr(1024) == pytest.approx(1.5)  # airbench's 11.5 per 1024 on the batch sum, as a batch-mean rate
    with pytest.raises(DataError, match="unknown feature; choose from bn-bias-lr"):
        resolve_features(("lookahed",))


def test_a_resumed_run_reads_back_the_lookahead_average(tmp_path: Path) -> None:
    model = edge_cnn((16, 16, 3), 4, AIRBENCH_SPEC)
    model.compile(optimizer=AirbenchSGD(0.01), loss="categorical_crossentropy")
    state = tmp_path / "lookahead.npz"
    look = Lookahead(total_steps=100, state=state)
    look.set_model(model)
    look.on_train_begin()
    assert look.average is not None
    look.average[0] += 3.0  # an average that differs from the weights
    look.on_epoch_begin(1)
    model.optimizer.iterations.assign(40)  # as a resume point 40 steps in
    again = Lookahead(total_steps=100, state=state)
    again.set_model(model)
    again.on_train_begin()
    assert again.step == 40 and again.average is not None
    np.testing.assert_array_equal(again.average[0], look.average[0])
    fresh = Lookahead(total_steps=100, state=tmp_path / "none.npz")
    fresh.set_model(model)
    fresh.on_train_begin()  # no saved state: starts from the weights
    assert fresh.average is not None and not np.array_equal(fresh.average[0], look.average[0])


def test_under_mixed_bfloat16_pixels_and_whitening_stay_float32() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = edge_cnn((16, 16, 3), 4, AIRBENCH_SPEC)
        policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert policies["rescale"] == policies["whiten"] == policies["whiten_relu"] == "float32"
    assert policies["b0_conv0"] == "mixed_bfloat16" and policies["probs"] == "float32"


def _trained_like(model: keras.Model, rng: np.random.Generator) -> None:
    """Batch-norm biases and statistics away from their initial values, as after training."""
    weights = []
    for w in model.weights:
        v = keras.ops.convert_to_numpy(w)
        if w.path.endswith(("beta", "moving_mean")):
            v = rng.normal(0, 0.5, v.shape).astype(np.float32)
        elif w.path.endswith("moving_variance"):
            v = rng.uniform(0.2, 3.0, v.shape).astype(np.float32)
        weights.append(v)
    model.set_weights(weights)


def test_pool_before_bn_trains_airbench_order_and_saves_the_same_function_in_foldable_order(cifar10: Dataset) -> None:
    spec = EdgeSpec(**{**AIRBENCH_SPEC.__dict__, "pool_before_bn": True})
    trained = edge_cnn((32, 32, 3), 10, spec, sample=cifar10.x[:500])
    names = [layer.name for layer in trained.layers]
    assert names.index("b0_pool") < names.index("b0_bn0")  # statistics of the pooled map while training
    _trained_like(trained, np.random.default_rng(0))
    saved = edge_cnn((32, 32, 3), 10, inference_spec(spec))
    names = [layer.name for layer in saved.layers]
    assert names.index("b0_bn0") == names.index("b0_conv0") + 1  # batch norm right after its conv: folds for int8
    saved.set_weights(trained.get_weights())
    x = cifar10.x[:64].astype(np.float32)
    np.testing.assert_allclose(saved.predict(x, verbose=0), trained.predict(x, verbose=0), atol=1e-6)
    # with trainable batch-norm weights a scale may be negative (max pooling does not commute): the order stays
    assert inference_spec(EdgeSpec(pool_before_bn=True, bn_scale=True)).pool_before_bn
    assert inference_spec(EdgeSpec(pool_before_bn=True, bn_scale=False, activation="gelu")).pool_before_bn


def test_gelu_is_airbench_activation_and_anything_else_is_refused() -> None:
    model = edge_cnn((16, 16, 3), 4, EdgeSpec(widths=(8, 16, 16), activation="gelu"))
    names = [layer.name for layer in model.layers]
    assert "whiten_gelu" in names and "b2_gelu1" in names and not any("relu" in n for n in names)
    assert TrainConfig(recipe="airbench", activation="gelu").edge_spec().activation == "gelu"
    with pytest.raises(ValueError, match="activation 'swish': choose relu or gelu"):
        edge_cnn((16, 16, 3), 4, EdgeSpec(activation="swish"))
