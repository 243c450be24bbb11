"""Labelled catalog items read once and resampled to the model's ground sample distance (``PreparedItem``):
what training crops from and what evaluation and calibration judge."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from rasterio.enums import ColorInterp

from data_catalog import LabelledItem
from data_catalog.labels import load_mask
from data_catalog.rasters import open_raster
from pipelines.normalisation import full_scale, to_unit_range
from pipelines.scenes import palette_colours

log = logging.getLogger(__name__)

# Registry plants in operation by this year are taken to show in the imagery (weak positives after it are left out).
VISIBLE_PLANT_MAX_YEAR = 2019
MIN_PANEL_PIXELS = 8  # a crop with fewer labelled panel pixels than this is not called a panel tile


@dataclass
class PreparedItem:
    """An item resampled to the training GSD: image (H, W, C) float16 in [0, 1], mask or None."""

    item: LabelledItem
    image: np.ndarray
    mask: np.ndarray | None  # uint8 {0, 1}; None when only a positive presence label is known
    has_panels: bool


def read_image_bands(path, bands: int) -> np.ndarray:
    """Read the first ``bands`` non-alpha bands of an image as (H, W, C) in [0, 1]."""
    with open_raster(path) as src:
        colours = palette_colours(src)
        if colours is not None:
            return to_unit_range(colours[src.read(1), :3])[..., :bands]
        indexes = [i for i, ci in zip(src.indexes, src.colorinterp) if ci != ColorInterp.alpha][:bands]
        if len(indexes) < bands:
            raise ValueError(f"{path}: has {len(indexes)} colour bands, the model needs {bands}")
        pixels = src.read(indexes)
        scale = full_scale(src, indexes[0])
    return np.moveaxis(to_unit_range(pixels, scale), 0, -1)


def _resample(array: np.ndarray, scale: float, is_mask: bool) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return array
    h, w = array.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if is_mask:
        return (cv2.resize(array.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(array.astype(np.float32), size, interpolation=interp)


def prepare_item(item: LabelledItem, gsd_m: float, bands: int) -> PreparedItem:
    """Read and resample one item to ``gsd_m``."""
    scale = (item.gsd_m or gsd_m) / gsd_m
    image = _resample(read_image_bands(item.image_path, bands), scale, is_mask=False)
    mask = load_mask(item)
    if mask is None and item.has_panels is False:
        mask = np.zeros(image.shape[:2], dtype=np.uint8)  # a negative tile is a known all-empty mask
    elif mask is not None:
        mask = _resample(mask, scale, is_mask=True)
    has_panels = bool(mask.sum() >= MIN_PANEL_PIXELS) if mask is not None else bool(item.has_panels)
    return PreparedItem(item, image.astype(np.float16), mask, has_panels)


def has_reliable_label(item: LabelledItem, max_year: int | None) -> bool:
    """Weak registry positives count only where the plant predates the imagery (year <= ``max_year``)."""
    first = str(item.properties.get("registry_first_operation", ""))
    return max_year is None or not first[:4].isdigit() or int(first[:4]) <= max_year


def prepare_items(items: list[LabelledItem], gsd_m: float, bands: int,
                  crop_size: int | None = None) -> list[PreparedItem]:
    """Read and resample items, skipping (and logging) unreadable ones.

    With ``crop_size`` (training), positive presence-only items much larger than a crop are left out: a random
    crop of them may well miss the panels, so its label would be wrong.
    """
    prepared = []
    for item in items:
        try:
            p = prepare_item(item, gsd_m, bands)
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", item.id, exc)
            continue
        if crop_size is not None and p.mask is None and max(p.image.shape[:2]) > 1.5 * crop_size:
            log.info("not training on %s: presence-only label on an image larger than a crop", item.id)
            continue
        prepared.append(p)
    return prepared
