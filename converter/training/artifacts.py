"""What every training recipe writes to its output folder: the model, its labels, the history and the learning curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from converter.data.datasets import Dataset, Rows


def save_run(out: Path, model: Any, train: Dataset | Rows, val: Dataset | Rows, history: dict[str, list[float]], *, title: str) -> dict[str, Any]:
    """Write model.keras, labels.txt, history.json and learning_curves.png; the report fields every recipe shares."""
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(train.classes) + "\n")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plot_history(history, out / "learning_curves.png", title=title)
    return {"dataset": train.name, "classes": list(train.classes), "input_shape": list(train.image_shape),
            "train_images": len(train), "val_images": len(val)}


def plot_history(history: dict[str, list[float]], path: Path, title: str = "") -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    a.plot(epochs, history["loss"], label="train")
    b.plot(epochs, history["accuracy"], label="train")
    if "val_loss" in history:
        a.plot(epochs, history["val_loss"], label="validation")
        b.plot(epochs, history["val_accuracy"], label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
