"""PNG plots of a training run: loss and validation curves per epoch, and the tile precision-recall curve.

Drawn on bare ``matplotlib.figure.Figure`` objects (Agg canvas), so no GUI backend or pyplot state is involved.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

LOSS_COLUMNS = ("loss", "tile_loss", "pixel_loss", "bag_loss", "distill_loss")
METRIC_COLUMNS = ("tile_roc_auc", "tile_f1", "pixel_iou", "pixel_f1", "score")


def plot_curves(metrics_csv: Path, out: Path) -> Path:
    """Training losses and overall validation metrics against the epoch, from a run's ``metrics.csv``."""
    with metrics_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(row["epoch"]) for row in rows]
    figure = Figure(figsize=(10, 4), layout="constrained")
    losses, metrics = figure.subplots(1, 2)
    for axes, columns, title in ((losses, LOSS_COLUMNS, "training loss"), (metrics, METRIC_COLUMNS, "validation")):
        for column in columns:
            values = [_number(row.get(column)) for row in rows]
            if any(not math.isnan(v) for v in values):
                axes.plot(epochs, values, marker="o", label=column)
        axes.set(title=title, xlabel="epoch")
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    figure.savefig(out, dpi=100)
    return out


def plot_precision_recall(labels: np.ndarray, probabilities: np.ndarray, threshold: float, out: Path) -> Path:
    """Tile-level precision-recall curve with the operating point at ``threshold`` marked."""
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    predicted = np.asarray(probabilities) >= threshold
    positives = np.asarray(labels).astype(bool)
    point_recall = (predicted & positives).sum() / max(positives.sum(), 1)
    point_precision = (predicted & positives).sum() / max(predicted.sum(), 1)
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.plot(recall, precision, label="tile classifier")
    axes.plot([point_recall], [point_precision], "o", label=f"threshold {threshold:.2f}")
    axes.set(title="validation precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1.02),
             ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(out, dpi=100)
    return out


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
