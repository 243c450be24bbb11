"""Judging a model bundle on a catalog split: tile, pixel, object (panel) and area metrics, per source."""

from __future__ import annotations

import logging
import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from data_catalog import Catalog, LabelledItem
from data_catalog.labels import load_mask
from data_catalog.rasters import open_raster
from models import Bundle, load_bundle
from pipelines.evaluation.validation import predict_prepared, score_predictions
from pipelines.metrics import AreaCounter, ObjectCounter, PixelCounter
from pipelines.predictors import (
    GATE_FRACTION,
    Predictor,
    default_gate_threshold,
    pixel_threshold,
    predictor_for,
)
from pipelines.prepared import VISIBLE_PLANT_MAX_YEAR, PreparedItem, has_reliable_label, prepare_items
from pipelines.runtime import Runtime
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.vectorising import panel_pixels

log = logging.getLogger(__name__)

OBJECT_MIN_IOU = 0.5


def predict_split(catalog_dir: Path, bundle: Bundle, split: str, runtime: Runtime,
                  tta: bool = False) -> tuple[list[PreparedItem], list[tuple[float, np.ndarray]]]:
    """The reliably labelled items of ``split`` at the bundle's ground sample distance, and the bundle's
    (tile probability, pixel probability map) for each (``tta``: maps averaged over flips and turns)."""
    meta = bundle.metadata
    items = Catalog.open(catalog_dir).items(split)
    # the same items for every bundle, whatever year its training took weak positives up to
    reliable = [i for i in items if has_reliable_label(i, VISIBLE_PLANT_MAX_YEAR)]
    if len(reliable) < len(items):
        log.info("left out %d weak positives whose plant may postdate the imagery", len(items) - len(reliable))
    prepared = prepare_items(reliable, meta.gsd_m, len(meta.bands))
    if not prepared:
        raise ValueError(f"catalog {catalog_dir} has no readable items in split {split!r}")
    model = runtime.prepare(bundle.model)
    return prepared, predict_prepared(model, prepared, meta.norm_mean, meta.norm_std, runtime, meta.tile_size,
                                      tta=tta)


def evaluate(catalog_dir: Path, bundle_path: Path, split: str = "test", device: str = "auto",
             precision: str = "auto", as_scored: bool = False, tta: bool = False) -> dict[str, Any]:
    """Score every reliably labelled item of ``split`` with the bundle at its own thresholds; with ``tta``, pixel
    maps are averaged over flips and turns and judged at the bundle's threshold for that (``pixel_threshold``).

    Returns ``{"model", "split", "tta", "data_version", "items", "thresholds", "metrics"}``; ``metrics`` keys are
    ``<group>_<name>`` overall and ``<source>/<group>_<name>`` per source (see :func:`score_items`), and with
    ``as_scored`` those of :func:`scored_pixel_metrics` too.
    """
    bundle, runtime = load_bundle(bundle_path), Runtime.resolve(device, precision)
    meta = bundle.metadata
    prepared, predictions = predict_split(catalog_dir, bundle, split, runtime, tta)
    thresholds = {"tile": meta.thresholds["tile"], "pixel": pixel_threshold(meta, tta)}
    metrics = score_items(prepared, predictions, thresholds["tile"], thresholds["pixel"],
                          outline_min_pixels=ScoreOptions().min_area_m2 / meta.gsd_m**2,
                          gate_threshold=default_gate_threshold(meta))
    if as_scored:
        drawn = [p.item for p in prepared if p.item.label_kind != "presence"]
        metrics.update(scored_pixel_metrics(drawn, predictor_for(bundle, runtime, tta=tta)))
    return {
        "model": str(bundle_path), "split": split, "tta": tta, "data_version": meta.data_version,
        "items": len(prepared), "thresholds": thresholds, "metrics": metrics,
    }


def scored_pixel_metrics(items: list[LabelledItem], predictor: Predictor) -> dict[str, float]:
    """Pixel IoU and panel-area error of what ``solarscan score`` makes of each item with a drawn label (tiled,
    blended, gated, at the bundle's pixel threshold, on the item's own grid), overall and per source:
    ``scored_pixel_iou`` and ``scored_panel_area_relative_error``. Items without a CRS are scored at their
    catalog ground sample distance."""
    pixels: dict[str, PixelCounter] = defaultdict(PixelCounter)
    areas: dict[str, AreaCounter] = defaultdict(AreaCounter)
    threshold = predictor.metadata.thresholds["pixel"]
    with tempfile.TemporaryDirectory(prefix="solarscan-evaluate-") as work:
        for k, item in enumerate(items):
            masks = Path(work) / str(k)  # one folder per item: two items may share a file name
            options = ScoreOptions(masks_dir=masks, gsd_m=item.gsd_m, resume=False, progress=False)
            summary = score([item.image_path], Path(work) / f"{k}.geojson", options, predictor)
            if summary.failures:
                raise ValueError(f"{item.id}: scoring failed: {next(iter(summary.failures.values()))}")
            mask_path = next(p for p in masks.iterdir() if p.stem == item.image_path.stem)
            with open_raster(mask_path) as src:
                predicted = panel_pixels(src.read(1), threshold)
            truth = load_mask(item)
            for key in ("all", item.source):
                pixels[key].update(truth, predicted)
                areas[key].update(truth, predicted)
    metrics: dict[str, float] = {}
    for key, counter in pixels.items():
        prefix = "" if key == "all" else f"{key}/"
        metrics[f"{prefix}scored_pixel_iou"] = counter.scores()["iou"]
        metrics[f"{prefix}scored_panel_area_relative_error"] = areas[key].relative_error()
    return metrics


def score_items(prepared: list[PreparedItem], predictions: list[tuple[float, np.ndarray]],
                tile_threshold: float, pixel_threshold: float, outline_min_pixels: float = 1.0,
                gate_threshold: float | None = None) -> dict[str, float]:
    """Validation's tile and pixel metrics plus, over items with drawn labels, object precision/recall/F1 at
    IoU >= 0.5 and the relative panel-area error |predicted - true| / true; for weak registry positives, the
    tile recall (``weak_positive_recall``); and, over items with only a presence label, how well panel outlines
    alone find them (``outline_recall`` / ``outline_precision``): an item is outlined when it passes scoring's
    classifier gate (``gate_threshold``, by default ``GATE_FRACTION`` of the tile threshold) and at least
    ``outline_min_pixels`` of its pixels reach the pixel threshold (scoring drops smaller polygons);
    ``marked_share_median``: the median share of an outlined positive item's pixels marked as panel (how tightly
    outlines hug the arrays of chips without pixel labels)."""
    metrics = score_predictions(prepared, predictions, tile_threshold, pixel_threshold)
    gate = tile_threshold * GATE_FRACTION if gate_threshold is None else gate_threshold
    objects: dict[str, ObjectCounter] = defaultdict(lambda: ObjectCounter(OBJECT_MIN_IOU))
    areas: dict[str, AreaCounter] = defaultdict(AreaCounter)
    weak: dict[str, list[bool]] = defaultdict(list)
    outlines: dict[str, list[tuple[bool, bool]]] = defaultdict(list)  # (has panels, outlined)
    marked: dict[str, list[float]] = defaultdict(list)  # share of each outlined positive item marked as panel
    for p, (tile_prob, pixel_prob) in zip(prepared, predictions):
        keys = ("all", p.item.source)
        if p.item.label_kind != "presence":
            predicted = pixel_prob >= pixel_threshold
            for key in keys:
                objects[key].update(p.mask, predicted)
                areas[key].update(p.mask, predicted)
            continue
        outlined = bool(tile_prob >= gate
                        and np.count_nonzero(pixel_prob >= pixel_threshold) >= outline_min_pixels)
        for key in keys:
            outlines[key].append((p.has_panels, outlined))
            if p.has_panels and outlined:
                marked[key].append(float(np.mean(pixel_prob >= pixel_threshold)))
            if p.has_panels and "registry_first_operation" in p.item.properties:
                weak[key].append(tile_prob >= tile_threshold)
    for key, counter in objects.items():
        prefix = "" if key == "all" else f"{key}/"
        metrics.update({f"{prefix}object_{k}": v for k, v in counter.scores().items()})
        metrics[f"{prefix}panel_area_relative_error"] = areas[key].relative_error()
    for key, found in weak.items():
        metrics[f"{'' if key == 'all' else key + '/'}weak_positive_recall"] = float(np.mean(found))
    for key, shares in marked.items():
        metrics[f"{'' if key == 'all' else key + '/'}marked_share_median"] = float(np.median(shares))
    for key, pairs in outlines.items():
        prefix = "" if key == "all" else f"{key}/"
        truth, outlined = np.array(pairs).T
        metrics[f"{prefix}outline_recall"] = float(outlined[truth].mean()) if truth.any() else math.nan
        metrics[f"{prefix}outline_precision"] = float(truth[outlined].mean()) if outlined.any() else math.nan
    return metrics


def format_table(report: dict[str, Any]) -> str:
    """The metrics as a text table: one row per metric, one column per source ('all' first)."""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in report["metrics"].items():
        source, _, name = key.rpartition("/")
        table[name][source or "all"] = value
    sources = sorted({s for row in table.values() for s in row}, key=lambda s: (s != "all", s))
    width = max(len(name) for name in table)
    timed = f", scored in {report['seconds']:.1f} s" if "seconds" in report else ""
    lines = [
        (f"{report['model']} on split {report['split']!r} ({report['items']} items, catalog {report['data_version']}"
         f"{timed})"),
        " ".join([" " * width, *(s.rjust(8) for s in sources)]),
    ]
    for name, row in table.items():
        lines.append(" ".join([name.ljust(width), *(_cell(row.get(s), max(len(s), 8)) for s in sources)]))
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    text = "-" if value is None or math.isnan(value) else f"{value:.3f}"
    return text.rjust(width)
