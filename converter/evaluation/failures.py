"""Where a classifier goes wrong: confusion matrix, most confident mistakes, and a short summary.

:func:`analyse` takes the true labels and the predicted probabilities; the result renders as
text (:meth:`FailureAnalysis.confusion_text`, :meth:`FailureAnalysis.paragraph`), as JSON, and
as two images (:func:`plot_confusion`, :func:`plot_mistakes`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.data.datasets import CIFAR10_CLASSES

log = logging.getLogger(__name__)

CIFAR10_ANIMALS = frozenset({"bird", "cat", "deer", "dog", "frog", "horse"})
CONFIDENT = 0.9  # a mistake at or above this score counts as "confidently wrong"


@dataclass(frozen=True)
class Mistake:
    index: int  # into the held-out set
    true: int
    predicted: int
    score: float  # the predicted class's probability


@dataclass(frozen=True)
class Confusion:
    true: str
    predicted: str
    count: int
    fraction: float  # of the true class's images


@dataclass(frozen=True)
class FailureAnalysis:
    method_key: str
    method_name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    confusion: np.ndarray  # (C, C) counts, rows true, columns predicted
    mistakes: tuple[Mistake, ...]  # every mistake, most confident first
    correct_scores: np.ndarray  # top score of each correct prediction

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))

    def class_accuracy(self) -> list[tuple[str, float]]:
        totals = self.confusion.sum(1)
        return [(c, float(self.confusion[i, i] / totals[i])) for i, c in enumerate(self.classes) if totals[i]]

    def worst_classes(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.class_accuracy(), key=lambda t: t[1])[:k]

    def confused_pairs(self, k: int = 5) -> list[Confusion]:
        """The ``k`` most frequent (true, predicted) mix-ups, largest count first."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        totals = self.confusion.sum(1)
        order = np.argsort(-off, axis=None, kind="stable")[:k]
        pairs = []
        for flat in order:
            i, j = divmod(int(flat), len(self.classes))
            if off[i, j] == 0:
                break
            pairs.append(Confusion(self.classes[i], self.classes[j], int(off[i, j]), float(off[i, j] / totals[i])))
        return pairs

    def confident_mistakes(self, k: int = 24) -> list[Mistake]:
        return list(self.mistakes[:k])

    def confusion_text(self) -> str:
        """The matrix as a fixed-width table (class names cut to 10 characters)."""
        names = [c[:10] for c in self.classes]
        width = max(6, *(len(n) for n in names), len(str(int(self.confusion.max()))) + 1)
        lines = [" " * width + " " + " ".join(n.rjust(width) for n in names)]
        for name, row in zip(names, self.confusion, strict=True):
            lines.append(name.rjust(width) + " " + " ".join(str(int(v)).rjust(width) for v in row))
        return "\n".join(lines)

    def paragraph(self) -> str:
        """A short, data-driven account of the failures and their likely causes."""
        n = int(self.confusion.sum())
        acc = self.class_accuracy()
        parts = [f"{self.method_name} classifies {self.accuracy:.1%} of the {n:,} held-out images correctly."]
        chance = 1.0 / len(self.classes)
        if self.accuracy < 1.5 * chance:
            parts.append(
                f"That is close to chance ({chance:.0%}): the model has hardly learned anything yet (too few epochs or images), "
                "so the confusions below say more about its starting point than about the classes."
            )
        if len(acc) > 2:
            worst = self.worst_classes(3)
            best = max(acc, key=lambda t: t[1])
            parts.append(
                "Its weakest classes are " + _join([f"{c} ({a:.1%})" for c, a in worst]) + f"; its best is {best[0]} ({best[1]:.1%})."
            )
        elif len(acc) == 2:
            (c1, a1), (c2, a2) = sorted(acc, key=lambda t: t[1])
            parts.append(f"It is better on {c2} ({a2:.1%}) than on {c1} ({a1:.1%}).")
        pairs = self.confused_pairs(4 if len(self.classes) > 2 else 2)
        if pairs:
            parts.append(
                "The most frequent confusions are "
                + _join([f"{p.true} → {p.predicted} ({p.count} images, {p.fraction:.1%} of the {p.true} images)" for p in pairs])
                + "."
            )
            parts += self._direction_notes(pairs)
        parts += self._confidence_notes()
        h, w = self.image_shape[:2]
        if min(h, w) <= 32 and len(self.classes) > 2:
            text = (
                f"A potential cause: at {h}x{w} pixels much fine detail (faces, legs, texture) is gone, so classes that differ "
                "mainly in such detail are the likeliest to be mixed up."
            )
            weakest = {c for c, _ in self.worst_classes(3)}
            if set(self.classes) == set(CIFAR10_CLASSES) and weakest <= CIFAR10_ANIMALS:
                text += " Here all three weakest classes are animals, while the vehicles, with distinctive shapes and backgrounds, do better."
            parts.append(text)
        return " ".join(parts)

    def _direction_notes(self, pairs: Sequence[Confusion]) -> list[str]:
        idx = {c: i for i, c in enumerate(self.classes)}
        notes: list[str] = []
        leaning: dict[str, list[str]] = {}  # predicted class -> classes mistaken for it one way
        seen = set()
        for p in pairs:
            key = frozenset((p.true, p.predicted))
            if key in seen:
                continue
            seen.add(key)
            back = int(self.confusion[idx[p.predicted], idx[p.true]])
            if back * 2 >= p.count:
                notes.append(
                    f"{p.true} and {p.predicted} are confused in both directions ({p.count} and {back} images), which points to "
                    "classes that look alike to the model rather than to a bias towards one of them."
                )
            else:
                leaning.setdefault(p.predicted, []).append(p.true)
        for target, sources in leaning.items():
            verb = "is" if len(sources) == 1 else "are"
            notes.append(f"{_join(sources)} {verb} taken for {target} much more often than the reverse: when unsure, the model leans towards {target}.")
        return notes

    def _confidence_notes(self) -> list[str]:
        if not self.mistakes:
            return []
        scores = np.array([m.score for m in self.mistakes])
        confident = int(np.sum(scores >= CONFIDENT))
        text = (
            f"{confident} of the {len(scores)} mistakes ({confident / len(scores):.0%}) are made with a score of at least {CONFIDENT}; "
            "the grid below shows the most confident ones, where ambiguous, atypical or mislabelled images show up first."
        )
        if len(self.correct_scores):
            right, wrong = float(np.median(self.correct_scores)), float(np.median(scores))
            text += f" The median top score is {right:.2f} on correct predictions and {wrong:.2f} on mistakes, "
            if right - wrong >= 0.1:
                text += "so a score threshold (as the edge app's) rejects many mistakes at little cost."
            else:
                text += "so the score barely separates them and a threshold would not help much."
        return [text]

    def to_json(self, confusion_png: str | None = None, mistakes_png: str | None = None, k: int = 24) -> dict[str, Any]:
        return {
            "method": self.method_key,
            "method_name": self.method_name,
            "accuracy": self.accuracy,
            "confusion_matrix": self.confusion.astype(int).tolist(),
            "confusion_text": self.confusion_text(),
            "worst_classes": [{"class": c, "accuracy": a} for c, a in self.worst_classes(3)],
            "confused_pairs": [asdict(p) for p in self.confused_pairs(5)],
            "confident_mistakes": [
                {"index": m.index, "true": self.classes[m.true], "predicted": self.classes[m.predicted], "score": m.score}
                for m in self.confident_mistakes(k)
            ],
            "paragraph": self.paragraph(),
            "confusion_png": confusion_png,
            "mistakes_png": mistakes_png,
        }


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def analyse(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    image_shape: tuple[int, int, int],
    method_key: str = "",
    method_name: str = "the model",
) -> FailureAnalysis:
    """Confusion matrix and mistakes (most confident first) from probabilities ``(N, C)``."""
    n_cls = len(classes)
    if probs.ndim != 2 or probs.shape != (len(y_true), n_cls):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(y_true)} labels and {n_cls} classes")
    pred = np.argmax(probs, 1)
    score = probs[np.arange(len(pred)), pred].astype(np.float64)
    cm = np.zeros((n_cls, n_cls), dtype=np.int64)
    np.add.at(cm, (y_true, pred), 1)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-score[wrong], kind="stable")]
    mistakes = tuple(Mistake(int(i), int(y_true[i]), int(pred[i]), float(score[i])) for i in wrong)
    return FailureAnalysis(method_key, method_name, tuple(classes), image_shape, cm, mistakes, score[pred == y_true])


# --------------------------------------------------------------------------- images


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_confusion(fa: FailureAnalysis, path: Path) -> Path:
    """Row-normalised confusion matrix with the counts written in the cells."""
    plt = _pyplot()
    cm = fa.confusion
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(fa.classes)
    size = max(4.0, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), fa.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), fa.classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"{fa.method_name}: {fa.accuracy:.1%}")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7 if n > 6 else 10, color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_mistakes(fa: FailureAnalysis, images: np.ndarray, path: Path, k: int = 24, cols: int = 6) -> Path:
    """A grid of the ``k`` most confident mistakes: the image, its true and predicted class, the score."""
    plt = _pyplot()
    shown = fa.confident_mistakes(k)
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), shown, strict=False):
        img = images[m.index]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        ax.set_title(f"true: {fa.classes[m.true]}\npred: {fa.classes[m.predicted]} {m.score:.2f}", fontsize=8)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{fa.method_name}: most confident mistakes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
