"""The comparison's results: one JSON document, and the Markdown and charts generated from it.

``results.json`` is the record; :func:`render_markdown` turns it into ``report.md`` and
:func:`plot_comparison` into ``accuracy.png``, so the three always agree. :func:`parse_markdown_table`
reads a generated table back (the tests use it to check that agreement).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RESULTS_FORMAT = "compare-models/1"
KINDS = ("classical", "cnn")


@dataclass
class MethodResult:
    """One row of the comparison: a model's numbers on the shared held-out split."""

    key: str  # "hog/linear-svm", "edge/float", "edge/int8"
    name: str  # "HOG + linear SVM", "edge CNN (int8 TFLite)"
    kind: str  # "classical" or "cnn"
    accuracy: float
    per_class: dict[str, float]
    train_seconds: float  # feature extraction + fitting, or CNN training (+ conversion for int8)
    inference_ms: float  # per image, features included
    size_bytes: int
    size_of: str  # what was measured: "pickled pipeline", ".keras file", ".tflite file"
    train_images: int
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodResult:
        return cls(**d)


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class present in ``y_true`` (the fraction of its images classified correctly)."""
    out = {}
    for i, c in enumerate(classes):
        mask = y_true == i
        if mask.any():  # a class absent from the held-out set has no accuracy
            out[c] = float(np.mean(y_pred[mask] == i))
    return out


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured (timings mean little without it)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):  # not on every platform
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


COMPARED_LIBRARIES = ("numpy", "scikit-learn", "scikit-image", "tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert")


def library_versions(dists: Sequence[str] = COMPARED_LIBRARIES) -> dict[str, str]:
    """Installed versions of ``dists`` (those not installed are left out)."""
    from importlib import metadata  # noqa: PLC0415

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- JSON


def results_document(
    *,
    dataset: str,
    data: str,
    classes: Sequence[str],
    image_shape: Sequence[int],
    train_images: int,
    eval_images: int,
    eval_split: str,
    command: str,
    quick: bool = False,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """A new ``results.json`` document: what was compared, where and how; methods are added as they finish."""
    return {
        "format": RESULTS_FORMAT,
        "dataset": dataset,
        "data": data,
        "classes": list(classes),
        "image_shape": [int(v) for v in image_shape],
        "train_images": int(train_images),
        "eval_images": int(eval_images),
        "eval_split": eval_split,
        "quick": bool(quick),
        "seed": seed,
        "command": command,
        "date": now_utc(),
        "machine": machine_info(),
        "versions": library_versions(),
        "methods": [],
        "failure_analysis": [],
        "notes": list(notes),
        "chart": None,
    }


def write_results(results: dict[str, Any], out: Path) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    return path


def methods_of(results: dict[str, Any]) -> list[MethodResult]:
    return [MethodResult.from_dict(m) for m in results["methods"]]


def method_dicts(methods: Sequence[MethodResult]) -> list[dict[str, Any]]:
    return [asdict(m) for m in methods]


# --------------------------------------------------------------------------- Markdown

TABLE_COLUMNS = ("Method", "Kind", "Accuracy (%)", "Train time (s)", "Inference (ms/image)", "Size (bytes)", "Train images")


def fmt_accuracy(a: float) -> str:
    return "n/a" if a != a else f"{100 * a:.2f}"  # noqa: PLR0124 - NaN check


def fmt_seconds(s: float) -> str:
    return f"{s:.1f}"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def fmt_bytes(n: int) -> str:
    return f"{n:,}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    sep = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    return "\n".join([_row(header), _row(sep), *(_row(r) for r in rows)])


def results_table(methods: Sequence[MethodResult]) -> str:
    """The main table, best accuracy first."""
    ranked = sorted(methods, key=lambda m: -m.accuracy)
    rows = [
        [m.name, m.kind, fmt_accuracy(m.accuracy), fmt_seconds(m.train_seconds), fmt_ms(m.inference_ms), fmt_bytes(m.size_bytes), str(m.train_images)]
        for m in ranked
    ]
    return markdown_table(TABLE_COLUMNS, rows, align_right_from=2)


def per_class_table(methods: Sequence[MethodResult], classes: Sequence[str]) -> str:
    rows = [[m.name, *(fmt_accuracy(m.per_class.get(c, float("nan"))) for c in classes)] for m in sorted(methods, key=lambda m: -m.accuracy)]
    return markdown_table(["Method", *classes], rows)


def parse_markdown_table(text: str, first_header: str = "Method") -> list[dict[str, str]]:
    """The first Markdown table whose first header cell is ``first_header``, as dicts of cell text."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            rows = []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(cells, _cells(body), strict=True)))
            return rows
    raise ValueError(f"no table starting with {first_header!r}")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    parts = line.strip("|").replace("\\|", "\x00").split("|")
    return [p.strip().replace("\x00", "|") for p in parts]


def _describe_data(r: dict[str, Any]) -> list[str]:
    shape = "x".join(str(v) for v in r["image_shape"])
    lines = [
        f"- **Data:** `{r['data']}` ({r['dataset']}, {len(r['classes'])} classes, {shape} images)",
        f"- **Training set:** {r['train_images']:,} images; **held-out set:** {r['eval_images']:,} images ({r['eval_split']}), the same for every method",
    ]
    if r.get("quick"):
        lines.append("- **Quick run:** small stratified subsample and few CNN epochs; the numbers are a smoke test, not results")
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """``report.md`` from the ``results.json`` document (the only source of its numbers)."""
    methods = methods_of(results)
    classes = results["classes"]
    m = results["machine"]
    load = f", load average {' / '.join(str(v) for v in m['load_average'])} at the start" if "load_average" in m else ""
    out = [
        f"# Classical machine learning versus CNNs on {results['dataset']}",
        "",
        *(f"- **Command:** `{c}`" for c in results.get("commands") or [results["command"]]),
        f"- **Date:** {results['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}{load}",
        "- **Libraries:** " + ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items()),
        *_describe_data(results),
        "",
        "## Results",
        "",
        results_table(methods),
        "",
        "Accuracy is on the held-out set. Train time includes feature extraction (classical) or all epochs "
        "(CNN; int8 adds the conversion). Inference is wall time per image over the whole held-out set, "
        "feature extraction included; the float CNNs run batched in Keras, the int8 models one image at a time in LiteRT "
        "(as on the device). Size is the pickled scikit-learn pipeline, the `.keras` file or the `.tflite` file.",
        "",
    ]
    if results.get("chart"):
        out += [f"![accuracy and inference time]({results['chart']})", ""]
    notes = [(mm.name, n) for mm in methods for n in mm.notes]
    if notes or results.get("notes"):
        out += ["### Notes", ""]
        out += [f"- {n}" for n in results.get("notes", [])]
        out += [f"- {name}: {n}" for name, n in notes]
        out.append("")
    out += ["## Per-class accuracy (%)", "", per_class_table(methods, classes), ""]
    for fa in results.get("failure_analysis", []):
        out += [f"## Failure analysis: {fa['method_name']}", "", fa["paragraph"], ""]
        out += ["Confusion matrix (rows: true class, columns: predicted class):", "", "```", fa["confusion_text"], "```", ""]
        if fa.get("confusion_png"):
            out += [f"![confusion matrix]({fa['confusion_png']})", ""]
        if fa.get("mistakes_png"):
            out += [f"The {len(fa['confident_mistakes'])} most confident mistakes (true → predicted, score):", ""]
            out += [f"![most confident mistakes]({fa['mistakes_png']})", ""]
    return "\n".join(out)


def write_markdown(results: dict[str, Any], out: Path) -> Path:
    path = out / "report.md"
    path.write_text(render_markdown(results))
    return path


# --------------------------------------------------------------------------- chart


def plot_comparison(methods: Sequence[MethodResult], path: Path, title: str = "") -> Path:
    """Accuracy (left) and inference time per image (right, log scale), one bar per method."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    ranked = sorted(methods, key=lambda m: m.accuracy)
    names = [m.name for m in ranked]
    colours = ["tab:orange" if m.kind == "cnn" else "tab:blue" for m in ranked]
    height = max(3.0, 0.32 * len(ranked) + 1.2)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    acc = [100 * m.accuracy for m in ranked]
    bars = a.barh(names, acc, color=colours)
    a.bar_label(bars, labels=[f"{v:.1f}" for v in acc], padding=2, fontsize=8)
    a.set(xlabel="held-out accuracy (%)", xlim=(0, 105))
    b.barh(names, [max(m.inference_ms, 1e-4) for m in ranked], color=colours)
    b.set(xlabel="inference (ms / image, log)", xscale="log")
    b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (a, b):
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:orange")]
    a.legend(handles, ["classical (features + classifier)", "CNN"], loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "MethodResult",
    "library_versions",
    "machine_info",
    "parse_markdown_table",
    "per_class_accuracy",
    "plot_comparison",
    "render_markdown",
    "results_document",
    "write_markdown",
    "write_results",
]
