"""Detection metrics: tile-level classification, pixel-level segmentation and object-level (panel) scores."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    accuracy_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def tile_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC AUC of tile-level panel presence (AUC is NaN for one class)."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0.0
    )
    auc = roc_auc_score(labels, probabilities) if len(np.unique(labels)) == 2 else float("nan")
    return {
        "accuracy": float(accuracy_score(labels, predicted)), "precision": float(precision),
        "recall": float(recall), "f1": float(f1), "roc_auc": float(auc), "count": len(labels),
    }


class PixelCounter:
    """Accumulates true/false positives and false negatives over many masks."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        truth, predicted = truth.astype(bool), predicted.astype(bool)
        self.tp += int(np.count_nonzero(truth & predicted))
        self.fp += int(np.count_nonzero(~truth & predicted))
        self.fn += int(np.count_nonzero(truth & ~predicted))

    def scores(self) -> dict[str, float]:
        """Pixel IoU and F1 over everything counted (NaN when nothing was labelled or predicted)."""
        union = self.tp + self.fp + self.fn
        iou = self.tp / union if union else float("nan")
        f1 = 2 * self.tp / (2 * self.tp + self.fp + self.fn) if union else float("nan")
        return {"iou": iou, "f1": f1}


def object_iou(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """IoU matrix (true objects x predicted objects) of the 8-connected components of two binary masks."""
    true_labels, n_true = ndimage.label(truth, structure=EIGHT_CONNECTED)
    pred_labels, n_pred = ndimage.label(predicted, structure=EIGHT_CONNECTED)
    pairs = np.bincount((true_labels * (n_pred + 1) + pred_labels).ravel(), minlength=(n_true + 1) * (n_pred + 1))
    overlap = pairs.reshape(n_true + 1, n_pred + 1)
    true_area, pred_area = overlap.sum(1)[1:], overlap.sum(0)[1:]
    intersection = overlap[1:, 1:]
    return intersection / (true_area[:, None] + pred_area[None, :] - intersection)


class ObjectCounter:
    """Panel-level matches over many masks: a true and a predicted panel match when their IoU >= ``min_iou``.

    With ``min_iou`` >= 0.5 a panel can overlap at most one partner that much, so matches need no assignment.
    """

    def __init__(self, min_iou: float = 0.5) -> None:
        if min_iou < 0.5:
            raise ValueError(f"min_iou must be >= 0.5 for unique matches, got {min_iou}")
        self.min_iou = min_iou
        self.matched = self.true = self.predicted = 0

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        iou = object_iou(truth.astype(bool), predicted.astype(bool))
        self.matched += int(np.count_nonzero(iou >= self.min_iou))
        self.true += iou.shape[0]
        self.predicted += iou.shape[1]

    def scores(self) -> dict[str, float]:
        """Object precision, recall and F1 (NaN where undefined)."""
        precision = self.matched / self.predicted if self.predicted else float("nan")
        recall = self.matched / self.true if self.true else float("nan")
        total = self.true + self.predicted
        f1 = 2 * self.matched / total if total else float("nan")
        return {"precision": precision, "recall": recall, "f1": f1}


class AreaCounter:
    """Total true and predicted panel area (pixels) over many masks."""

    def __init__(self) -> None:
        self.true = self.predicted = 0

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        self.true += int(np.count_nonzero(truth))
        self.predicted += int(np.count_nonzero(predicted))

    def relative_error(self) -> float:
        """|predicted area - true area| / true area (NaN when there is no true panel area)."""
        return abs(self.predicted - self.true) / self.true if self.true else float("nan")
