"""Validation during training: whole labelled items through the detector, scored per source."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from models import PanelNet
from pipelines.dihedral import dihedral_mean
from pipelines.metrics import PixelCounter, tile_metrics
from pipelines.normalisation import normalise
from pipelines.predictors import tile_logits
from pipelines.prepared import PreparedItem
from pipelines.runtime import Runtime
from pipelines.tiling import DEFAULT_OVERLAP, ModelGrid, presence_window, scene_tiles

TILE_THRESHOLD = 0.5
PIXEL_THRESHOLD = 0.5


@torch.inference_mode()
def predict_prepared(model: PanelNet, prepared: list[PreparedItem], mean: list[float], std: list[float],
                     runtime: Runtime, tile_size: int | None = None, batch_pixels: int = 16 * 128 * 128,
                     tta: bool = False, tile_probabilities: Sequence[float] | None = None,
                     ) -> list[tuple[float, np.ndarray]]:
    """(tile probability, pixel probability map) for every item, batching items of the same size
    (about ``batch_pixels`` pixels per batch, so large scenes go one at a time).

    The pixel map comes from one pass over the whole item (with ``tta``, the mean of the passes over its eight
    flips and quarter turns, as ``solarscan score --tta`` makes it). An item larger than ``tile_size`` in either
    direction takes, as scoring decides a scene, the highest classifier probability over the windows of its
    scoring tiles (``scene_tiles``, ``tile_logits``): one pass over the whole image pools the classifier over far
    more ground than it was trained to judge and dilutes a small panel below the threshold. ``tile_probabilities``,
    where given, are the items' tile probabilities known already (a classifier training keeps frozen gives the
    same every epoch): those items larger than ``tile_size`` are not judged window by window again.
    """
    was_training = model.training
    model.eval()
    results: list[tuple[float, np.ndarray] | None] = [None] * len(prepared)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(prepared):
        by_shape[p.image.shape[:2]].append(i)
    for (height, width), indexes in by_shape.items():
        batch_size = max(1, batch_pixels // (height * width))
        tiled = tile_size is not None and max(height, width) > tile_size
        for start in range(0, len(indexes), batch_size):
            chunk = indexes[start:start + batch_size]
            images = np.stack([_normalised(prepared[i], mean, std) for i in chunk])
            tile, pixel = _predict(model, images, runtime, tta)
            for j, i in enumerate(chunk):
                if tiled:
                    tile[j] = _max_tile_probability(model, images[j], tile_size, runtime, batch_pixels) \
                        if tile_probabilities is None else tile_probabilities[i]
                results[i] = (float(tile[j]), pixel[j])
    model.train(was_training)
    return results  # type: ignore[return-value]


def _normalised(item: PreparedItem, mean: list[float], std: list[float]) -> np.ndarray:
    return normalise(np.moveaxis(item.image.astype(np.float32), -1, 0), mean, std)


def _predict(model: PanelNet, images: np.ndarray, runtime: Runtime,
             tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Tile probabilities (N,) and pixel probabilities (N, H, W) of a normalised batch."""
    x = runtime.to_input(torch.from_numpy(images))
    with runtime.autocast():
        out = model(x)
        pixel = torch.sigmoid(out.mask_logit.float())[:, 0]
        if tta:
            pixel = dihedral_mean(x, lambda v: torch.sigmoid(model(v).mask_logit.float())[:, 0], pixel)
    return torch.sigmoid(out.tile_logit.float()).cpu().numpy(), pixel.cpu().numpy()


def _max_tile_probability(model: PanelNet, image: np.ndarray, bundle_tile_size: int, runtime: Runtime,
                          batch_pixels: int) -> float:
    """The highest classifier probability over the scoring tiles of a normalised (C, H, W) image, laid out and
    judged as scoring does (tiles beyond the image are zero, the band mean, as the model pads)."""
    _, height, width = image.shape
    tiles = scene_tiles(ModelGrid(width, height, 1.0, 1.0), bundle_tile_size, DEFAULT_OVERLAP)
    size = tiles[0].size
    padded = np.zeros((image.shape[0], max(t.row for t in tiles) + size, max(t.col for t in tiles) + size),
                      dtype=image.dtype)
    padded[:, :height, :width] = image
    stacked = np.stack([padded[:, t.row:t.row + size, t.col:t.col + size] for t in tiles])
    per_batch = max(1, batch_pixels // (size * size))
    window = presence_window(size, bundle_tile_size)
    best = 0.0
    for start in range(0, len(stacked), per_batch):
        with runtime.autocast():
            features = model.encode(runtime.to_input(torch.from_numpy(stacked[start:start + per_batch])))
            logits = tile_logits(model, features, window)
        best = max(best, float(torch.sigmoid(logits.float()).max()))
    return best


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
    """One number to pick the best epoch: mean of tile ROC AUC and pixel IoU (whichever exist); -inf when neither
    does (training then keeps the latest epoch)."""
    values = [metrics.get(k, math.nan) for k in ("tile_roc_auc", "pixel_iou")]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else -math.inf
