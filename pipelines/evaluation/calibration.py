"""Choosing a bundle's decision thresholds on a labelled split (validation), never on the split it is judged on."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from models import load_bundle, rewrite_metadata
from pipelines.folders import check_writable_folder
from pipelines.metrics import PixelCounter
from pipelines.predictors import TTA_PIXEL_THRESHOLD
from pipelines.prepared import PreparedItem
from pipelines.runtime import Runtime

PIXEL_CANDIDATES = np.round(np.arange(0.05, 0.96, 0.05), 2)


def two_class_items(prepared: list[PreparedItem]) -> np.ndarray:
    """Mask of the items whose source holds both panel and panel-free items.

    A positives-only source (registry chips) rewards any low threshold, so it must not vote on one.
    """
    classes: dict[str, set[bool]] = defaultdict(set)
    for p in prepared:
        classes[p.item.source].add(p.has_panels)
    return np.array([len(classes[p.item.source]) == 2 for p in prepared], dtype=bool)


def choose_tile_threshold(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) of the tile threshold with the highest accuracy; (0.5, NaN) without both classes.

    The threshold is put halfway between the two neighbouring probabilities it separates, so it does not sit on
    an item's own probability. Where several cuts tie for the best accuracy (a few hundred validation tiles tie
    often), the middle one is taken (the lower of two middles), not an end of the range.
    """
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.all() or not labels.any():
        return 0.5, math.nan
    order = np.argsort(probabilities)
    p, y = probabilities[order], labels[order]
    # Threshold between p[k-1] and p[k]: items k.. are called positive. Correct = negatives below + positives above.
    negatives_below = np.concatenate([[0], np.cumsum(~y)])
    positives_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    correct = negatives_below + positives_above
    distinct = np.concatenate([[True], p[1:] > p[:-1], [True]])  # a cut only between different probabilities
    correct = np.where(distinct, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    k = int(best[(len(best) - 1) // 2])
    low = p[k - 1] if k > 0 else 0.0
    high = p[k] if k < len(p) else 1.0
    return float((low + high) / 2), float(correct[k] / len(p))


def choose_pixel_threshold(prepared: list[PreparedItem], pixel_maps: list[np.ndarray]) -> tuple[float, float]:
    """(threshold, IoU) of the pixel threshold among ``PIXEL_CANDIDATES`` with the best pixel IoU over the items
    with drawn labels; (0.5, NaN) when they hold no panel pixel (or there are none): no threshold is better."""
    drawn = [(p.mask, m) for p, m in zip(prepared, pixel_maps) if p.item.label_kind != "presence"]
    if not any(mask.any() for mask, _ in drawn):
        return 0.5, math.nan
    ious = []
    for threshold in PIXEL_CANDIDATES:
        counter = PixelCounter()
        for mask, probability in drawn:
            counter.update(mask, probability >= threshold)
        ious.append(counter.scores()["iou"])
    best = int(np.nanargmax(ious))
    return float(PIXEL_CANDIDATES[best]), float(ious[best])


def calibrate_predictions(prepared: list[PreparedItem], predictions: list[tuple[float, np.ndarray]],
                          tune_pixel: bool = False) -> dict[str, Any]:
    """Thresholds chosen on these predictions: the tile threshold of best accuracy over two-class sources and,
    with ``tune_pixel``, the pixel threshold of best IoU. Returns ``{"thresholds", "scores"}``."""
    keep = two_class_items(prepared)
    labels = np.array([p.has_panels for p in prepared])[keep]
    probabilities = np.array([tile for tile, _ in predictions])[keep]
    tile, accuracy = choose_tile_threshold(labels, probabilities)
    thresholds = {"tile": tile}
    scores = {"tile_accuracy": accuracy, "tile_items": int(keep.sum())}
    if tune_pixel:
        pixel, iou = choose_pixel_threshold(prepared, [m for _, m in predictions])
        thresholds["pixel"] = pixel
        scores["pixel_iou"] = iou
    return {"thresholds": thresholds, "scores": scores}


def calibrate(catalog_dir: Path, bundle_path: Path, split: str = "val", tune_pixel: bool = False,
              out: Path | None = None, device: str = "auto", precision: str = "auto",
              tta: bool = False) -> dict[str, Any]:
    """Choose the bundle's thresholds on ``split`` and write them into the bundle (``out``, default in place).

    With ``tta`` only the pixel threshold for scoring with test-time augmentation (``TTA_PIXEL_THRESHOLD``) is
    chosen, on maps averaged over flips and turns; the plain pixel and the tile thresholds are left as they are
    (test-time augmentation leaves the classifier alone).

    Returns ``{"model", "split", "tta", "items", "thresholds", "scores"}``, which is also recorded in the bundle's
    metrics under ``calibration`` (``calibration_tta`` with ``tta``).
    """
    from pipelines.evaluation.chips import predict_split

    check_writable_folder(Path(out or bundle_path).resolve().parent, "the calibrated bundle (--out)")
    bundle = load_bundle(bundle_path)
    prepared, predictions = predict_split(catalog_dir, bundle, split, Runtime.resolve(device, precision), tta)
    if tta:
        pixel, iou = choose_pixel_threshold(prepared, [m for _, m in predictions])
        chosen = {"thresholds": {TTA_PIXEL_THRESHOLD: pixel}, "scores": {"pixel_iou": iou}}
    else:
        chosen = calibrate_predictions(prepared, predictions, tune_pixel)
    if math.isnan(chosen["scores"].get("pixel_iou", 0.0)):
        raise ValueError(f"no drawn panel pixels in split {split!r} of {catalog_dir}; cannot tune the pixel threshold "
                         f"(drop {'--tta' if tta else '--tune-pixel'})")
    metadata = bundle.metadata
    metadata.thresholds = {**metadata.thresholds, **chosen["thresholds"]}
    report = {"model": str(bundle_path), "split": split, "tta": tta, "items": len(prepared), **chosen}
    record = "calibration_tta" if tta else "calibration"
    metadata.metrics = {**metadata.metrics, record: {k: v for k, v in report.items() if k != "model"}}
    rewrite_metadata(bundle_path, metadata, out)
    return report
