"""The converter's bounded cache evicts only its own entries: other tools' folders beside them survive."""

from __future__ import annotations

import os
from pathlib import Path

from converter.data.datasets import prune_cache


def _file(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    t = path.stat().st_mtime - age_s
    os.utime(path, (t, t))
    return path


def test_pruning_leaves_other_folders_alone_and_evicts_its_own_oldest_first(tmp_path: Path) -> None:
    """Seen on 2026-12-07: a convert-model run over its bound deleted the emulated Pi check's cached Debian root
    tarballs in ``pi-roots/`` (the oldest, largest files under the same cache folder)."""
    pi_root = _file(tmp_path / "pi-roots" / "bookworm-arm64-abc.tar.zst", 4000, age_s=10_000)  # oldest and largest
    old_data = _file(tmp_path / "cifar10-train.tar.gz-train-1.npz", 1000, age_s=5000)
    old_feat = _file(tmp_path / "features" / "efficientnet-lite0-a.npy", 1000, age_s=4000)
    new_feat = _file(tmp_path / "features" / "efficientnet-lite0-b.npy", 1000, age_s=10)
    weights = _file(tmp_path / "weights" / "efficientnet-lite0-c.npz", 1000, age_s=20)
    removed = prune_cache(tmp_path, limit=2000)
    assert set(removed) == {old_data, old_feat}
    assert pi_root.exists() and new_feat.exists() and weights.exists()
