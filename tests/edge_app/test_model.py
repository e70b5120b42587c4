"""top_k on the real model's scores: both of its paths (full sort of a short vector, partition of a long one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.data.datasets import Dataset
from edge_app.model import SORT_ALL_BELOW, Classifier, resolve_model, top_k


def _reference(scores: np.ndarray, labels: list[str], k: int, threshold: float) -> list[tuple[int, str, float]]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: max(1, min(k, len(scores)))]
    return [(i, labels[i] if i < len(labels) else str(i), float(scores[i])) for i in order if scores[i] >= threshold]


def test_top_k_matches_a_plain_sort_on_real_scores(cifar10_val: Dataset) -> None:
    clf = Classifier(resolve_model(Path("cifar10")), 1)  # 32 px in, 10 scores out: both top_k paths
    scores = [clf.invoke(img) for img in cifar10_val.x[:60]]
    for s in scores[:30]:  # 10 classes: the full-sort path
        for k, threshold in ((1, 0.0), (3, 0.0), (10, 0.0), (50, 0.0), (3, 0.2)):
            got = top_k(s, clf.labels, k, threshold)
            assert [(c.id, c.label, c.score) for c in got] == _reference(s, clf.labels, k, threshold)
            assert all(isinstance(c.id, int) and isinstance(c.score, float) for c in got)
    long = np.concatenate(scores)  # 600 real scores, with ties (uint8 outputs): the partition path
    assert len(long) > SORT_ALL_BELOW
    names = [f"class{i}" for i in range(500)]  # shorter than the vector: the rest are named by number
    for k in (1, 5, 20):
        got = top_k(long, names, k)
        assert [c.score for c in got] == sorted((float(v) for v in long), reverse=True)[:k]
        assert all(c.label == (names[c.id] if c.id < 500 else str(c.id)) and long[c.id] == c.score for c in got)
    assert top_k(long, names, 5, threshold=2.0) == []  # nothing passes
