"""``AugmentedBatches``: the one training PyDataset of every recipe, on real CIFAR-10 images; and the package layout it belongs to."""

import ast
from pathlib import Path

import numpy as np

from converter.data.batches import AugmentedBatches
from converter.data.datasets import Dataset, stratified_sample

CONVERTER = Path(__file__).resolve().parents[2] / "converter"


def _epoch(batches: AugmentedBatches) -> tuple[np.ndarray, np.ndarray]:
    parts = [batches[i] for i in range(len(batches))]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def test_every_image_once_an_epoch_with_its_own_target(cifar10_val: Dataset) -> None:
    data = cifar10_val.subset(stratified_sample(cifar10_val.y, 30, 0))
    plain = AugmentedBatches(data.x, data.y, 64, seed=3, augment=False)
    assert len(plain) == 5  # 300 / 64, the last batch short
    x, y = _epoch(plain)
    assert x.shape == data.x.shape and x.dtype == np.uint8
    # a reordering of the images, each still next to its own label
    index = {img.tobytes(): i for i, img in enumerate(data.x)}
    order = np.array([index[img.tobytes()] for img in x])
    assert sorted(order) == list(range(300)) and not np.array_equal(order, np.arange(300))
    assert np.array_equal(y, data.y[order])
    plain.on_epoch_end()
    assert not np.array_equal(_epoch(plain)[1], y)  # a new order each epoch


def test_augmented_images_are_flipped_and_shifted_copies_and_a_resume_sees_the_same_batches(cifar10_val: Dataset) -> None:
    data = cifar10_val.subset(stratified_sample(cifar10_val.y, 20, 0))
    targets = np.eye(10, dtype=np.float32)[data.y]
    fresh = AugmentedBatches(data.x, targets, 50, seed=7, pad=2, alt_flip_seed=7, dtype="float32")
    x0, y0 = _epoch(fresh)
    assert x0.dtype == np.float32 and y0.shape == (200, 10)
    xp, yp = _epoch(AugmentedBatches(data.x, targets, 50, seed=7, augment=False))  # the same order, not augmented
    assert np.array_equal(yp, y0)
    assert np.mean([np.array_equal(a, b) for a, b in zip(x0, xp, strict=True)]) < 0.2  # most images changed...
    for aug, src in zip(x0[:20], xp[:20], strict=True):  # ...each into a mirrored and/or shifted copy (up to 2 px)
        views = [f[sy : sy + 28, sx : sx + 28] for f in (src, src[:, ::-1]) for sy in range(5) for sx in range(5)]
        assert any(np.array_equal(aug[2:30, 2:30], v) for v in views)
    fresh.on_epoch_end()
    fresh.on_epoch_end()
    x2, y2 = _epoch(fresh)
    resumed = AugmentedBatches(data.x, targets, 50, seed=7, pad=2, alt_flip_seed=7, dtype="float32", skip_epochs=2)
    xr, yr = _epoch(resumed)
    assert np.array_equal(xr, x2) and np.array_equal(yr, y2)


def test_no_nested_pydataset_and_argparse_only_in_the_cli_package() -> None:
    for path in CONVERTER.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nested = [n.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, ast.ClassDef)]
        assert not nested, f"{path}: classes defined inside functions: {nested}"
        imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        if path.parent.name != "cli":
            assert "argparse" not in imports, f"{path} parses arguments; that belongs in converter/cli/"
