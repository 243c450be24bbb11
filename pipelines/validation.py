"""Validation during training: whole labelled items through the detector, scored per source."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from pipelines.metrics import PixelCounter, tile_metrics
from pipelines.normalisation import normalise
from pipelines.runtime import Runtime
from pipelines.training_data import PreparedItem

TILE_THRESHOLD = 0.5
PIXEL_THRESHOLD = 0.5


@torch.inference_mode()
def predict_prepared(model: nn.Module, prepared: list[PreparedItem], mean: list[float], std: list[float],
                     runtime: Runtime, batch_pixels: int = 16 * 128 * 128) -> list[tuple[float, np.ndarray]]:
    """(tile probability, pixel probability map) for every item, batching items of the same size
    (about ``batch_pixels`` pixels per batch, so large scenes go one at a time)."""
    was_training = model.training
    model.eval()
    results: list[tuple[float, np.ndarray] | None] = [None] * len(prepared)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(prepared):
        by_shape[p.image.shape[:2]].append(i)
    for (height, width), indexes in by_shape.items():
        batch_size = max(1, batch_pixels // (height * width))
        for start in range(0, len(indexes), batch_size):
            chunk = indexes[start:start + batch_size]
            images = np.stack([
                normalise(np.moveaxis(prepared[i].image.astype(np.float32), -1, 0), mean, std) for i in chunk
            ])
            with runtime.autocast():
                out = model(runtime.to_input(torch.from_numpy(images)))
            tile = torch.sigmoid(out.tile_logit.float()).cpu().numpy()
            pixel = torch.sigmoid(out.mask_logit.float())[:, 0].cpu().numpy()
            for j, i in enumerate(chunk):
                results[i] = (float(tile[j]), pixel[j])
    model.train(was_training)
    return results  # type: ignore[return-value]


def score_predictions(prepared: list[PreparedItem], predictions: list[tuple[float, np.ndarray]],
                      tile_threshold: float = TILE_THRESHOLD, pixel_threshold: float = PIXEL_THRESHOLD,
                      ) -> dict[str, float]:
    """Tile metrics overall and per source; pixel IoU/F1 over items with drawn (mask/polygon) labels."""
    labels: dict[str, list[int]] = defaultdict(list)
    probs: dict[str, list[float]] = defaultdict(list)
    pixels: dict[str, PixelCounter] = defaultdict(PixelCounter)
    for p, (tile_prob, pixel_prob) in zip(prepared, predictions):
        for key in ("all", p.item.source):
            labels[key].append(int(p.has_panels))
            probs[key].append(tile_prob)
            if p.item.label_kind != "presence":
                pixels[key].update(p.mask, pixel_prob >= pixel_threshold)
    metrics: dict[str, float] = {}
    for key, truth in labels.items():
        scores = tile_metrics(np.array(truth), np.array(probs[key]), tile_threshold)
        prefix = "tile" if key == "all" else f"{key}/tile"
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items() if k != "count"})
    for key, counter in pixels.items():
        prefix = "pixel" if key == "all" else f"{key}/pixel"
        metrics.update({f"{prefix}_{k}": v for k, v in counter.scores().items()})
    return metrics


def selection_score(metrics: dict[str, float]) -> float:
    """One number to pick the best epoch: mean of tile ROC AUC and pixel IoU (whichever exist)."""
    values = [metrics.get(k, math.nan) for k in ("tile_roc_auc", "pixel_iou")]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else -math.inf
