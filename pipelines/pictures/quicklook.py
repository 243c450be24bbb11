"""Quicklooks: a small colour picture of a georeferenced raster, laid on the Web Mercator grid of web maps.

The picture is read decimated (never the whole raster in memory), contrast-stretched per band and warped to
EPSG:3857, so a web map that stretches it between its lon/lat corners shows it in the right place.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import calculate_default_transform, reproject

from data_catalog.rasters import open_raster
from pipelines.errors import BandLayoutError, MissingGeoreferenceError, SceneReadError
from pipelines.scenes import expand_palette, palette_colours, select_bands
from pipelines.scoring.reading import gdal_cache_env

WEB_MERCATOR = "EPSG:3857"
MAX_SIZE = 1024  # longest side of a quicklook, pixels
_TO_LONLAT = Transformer.from_crs(WEB_MERCATOR, "EPSG:4326", always_xy=True)


@dataclass(frozen=True)
class OverlayGrid:
    """Where a quicklook lies: its Web Mercator grid and lon/lat bounds (west, south, east, north)."""

    transform: Affine
    width: int
    height: int
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class Quicklook:
    png: bytes  # RGBA, transparent outside the raster and on nodata
    bounds: tuple[float, float, float, float]  # west, south, east, north (degrees)


def overlay_grid(src: rasterio.DatasetReader, max_size: int = MAX_SIZE) -> OverlayGrid:
    """The Web Mercator grid covering ``src`` with at most ``max_size`` pixels along its longest side."""
    if src.crs is None:
        raise MissingGeoreferenceError(f"{src.name}: raster has no CRS, so it cannot be placed on a map")
    try:
        transform, width, height = calculate_default_transform(
            src.crs, WEB_MERCATOR, src.width, src.height, *src.bounds
        )
    except (RasterioError, ValueError) as exc:
        raise MissingGeoreferenceError(
            f"{src.name}: cannot be placed on a Web Mercator map ({exc})"
        ) from None
    scale = max(width, height) / max_size
    if scale > 1:
        width, height = max(1, math.ceil(width / scale)), max(1, math.ceil(height / scale))
        transform = transform @ Affine.scale(scale)
    west, north = transform @ (0, 0)
    east, south = transform @ (width, height)
    (lon0, lon1), (lat0, lat1) = _TO_LONLAT.transform([west, east], [south, north])
    return OverlayGrid(transform, width, height, (lon0, lat0, lon1, lat1))


def render(path: Path, max_size: int = MAX_SIZE) -> Quicklook:
    """An RGBA PNG of the raster at ``path`` (its red, green and blue bands, or its first band in grey)."""
    try:
        with gdal_cache_env(), open_raster(path) as src:  # a huge upload's blocks are never read again
            grid = overlay_grid(src, max_size)
            # Decimated read at about the quicklook's resolution, then warped onto its grid.
            factor = max(1.0, min(src.width / grid.width, src.height / grid.height))
            shape = (max(1, round(src.height / factor)), max(1, round(src.width / factor)))
            valid = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
            colours = palette_colours(src)
            if colours is not None:  # colour-map indexes are categories: nearest, then looked up
                pixels, opaque = expand_palette(src.read(1, out_shape=shape, resampling=Resampling.nearest), colours)
                valid &= opaque
            else:
                try:
                    bands = select_bands(path, src.colorinterp, src.descriptions, ["red", "green", "blue"])
                except BandLayoutError:
                    bands = (1, 1, 1)
                pixels = src.read(list(bands), out_shape=(3, *shape), resampling=Resampling.average)
            read_transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
            crs = src.crs
    except RasterioError as exc:
        raise SceneReadError(f"{path}: cannot be read as a raster ({exc})") from None
    rgb = _stretch(pixels.astype(np.float64), valid)
    rgba = np.concatenate([rgb, (valid * 255).astype(np.uint8)[None]])
    warped = np.zeros((4, grid.height, grid.width), np.uint8)
    reproject(
        rgba,
        warped,
        src_transform=read_transform,
        src_crs=crs,
        dst_transform=grid.transform,
        dst_crs=WEB_MERCATOR,
        src_nodata=None,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(warped, 0, -1), "RGBA").save(buffer, format="PNG", optimize=True)
    return Quicklook(buffer.getvalue(), grid.bounds)


def _stretch(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 bands stretched between each band's 2nd and 98th percentile over the valid pixels."""
    out = np.zeros(pixels.shape, np.uint8)
    for band, values in enumerate(pixels):
        sample = values[valid & np.isfinite(values)]
        if sample.size == 0:
            continue
        low, high = np.percentile(sample, [2, 98])
        scaled = (np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12) * 255
        out[band] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out
