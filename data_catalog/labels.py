"""Reading an item's label as a pixel mask on its image grid."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from rasterio.features import rasterize

from .errors import CatalogFormatError
from .items import LabelledItem
from .rasters import open_raster, raster_info


def load_mask(item: LabelledItem) -> np.ndarray | None:
    """uint8 (H, W) array of {0, 1} on the image's pixel grid, 1 = solar panel; None for ``presence`` items.

    ``mask`` labels: value > 0 -> 1. ``polygons`` labels: reprojected into the image CRS and rasterised with
    the image transform (pixels whose centre falls inside a polygon).
    """
    if item.label_kind == "presence":
        return None
    with open_raster(item.image_path) as src:
        image = raster_info(src)
    if item.label_kind == "mask":
        with open_raster(item.label_path) as src:
            mask = src.read(1)
        if mask.shape != image.shape:
            raise CatalogFormatError(
                f"{item.id}: mask {item.label_path} is {mask.shape}, image is {image.shape}"
            )
        return (mask > 0).astype(np.uint8)
    if image.crs is None:
        raise CatalogFormatError(f"{item.id}: image {item.image_path} has no CRS, cannot place its polygons")
    polygons = gpd.read_file(item.label_path)
    if polygons.empty:
        return np.zeros(image.shape, dtype=np.uint8)
    shapes = ((geometry, 1) for geometry in polygons.to_crs(image.crs).geometry)
    return rasterize(shapes, out_shape=image.shape, transform=image.transform, fill=0, dtype=np.uint8)
