"""Detection metrics: tile-level classification and pixel-level segmentation scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score


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
        "recall": float(recall), "f1": float(f1), "roc_auc": float(auc), "count": int(len(labels)),
    }


class PixelCounter:
    """Accumulates true/false positives and false negatives over many masks."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def update(self, truth: np.ndarray, predicted: np.ndarray, valid: np.ndarray | None = None) -> None:
        truth, predicted = truth.astype(bool), predicted.astype(bool)
        if valid is not None:
            truth, predicted = truth & valid, predicted & valid
        self.tp += int(np.count_nonzero(truth & predicted))
        self.fp += int(np.count_nonzero(~truth & predicted))
        self.fn += int(np.count_nonzero(truth & ~predicted))

    def scores(self) -> dict[str, float]:
        """Pixel IoU and F1 over everything counted (NaN when nothing was labelled or predicted)."""
        union = self.tp + self.fp + self.fn
        iou = self.tp / union if union else float("nan")
        f1 = 2 * self.tp / (2 * self.tp + self.fp + self.fn) if union else float("nan")
        return {"iou": iou, "f1": f1}
