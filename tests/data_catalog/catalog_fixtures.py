"""Seeded generator of the tiny rasters, polygons and CSV files the data catalog tests use.

Layout written by :func:`write_fixture` (all from ``numpy.random.default_rng(7)``)::

    geo/chip_a.tif, chip_b.tif, chip_c.tif       32x32 RGB, EPSG:32633, 0.5 m; a and b share an edge, c is 10 km away
    geo/chip_a_mask.tif (255 in rows 4-11, cols 6-15), chip_b_mask.tif (1 in rows 0-3), chip_c_mask.tif (zeros)
    geo/panels.geojson                           WGS84 rectangle = chip_a pixels rows 4-11, cols 6-15 (80 px)
    plain/tile_0.png .. tile_2.png, dup_of_0.tif  16x16 RGB without CRS (dup_of_0: tile_0's pixels as TIFF)
    plain/presence.csv                           file,has_panels
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from shapely.geometry import box

UTM = "EPSG:32633"
PIXEL = 0.5
ORIGINS = {
    "chip_a": (500_000.0, 5_000_000.0),
    "chip_b": (500_016.0, 5_000_000.0),
    "chip_c": (510_000.0, 5_000_000.0),
}
PANEL_ROWS, PANEL_COLS = slice(4, 12), slice(6, 16)
PANEL_PIXELS = 8 * 10


def write_raster(
    path: Path,
    array: np.ndarray,
    crs: str | None = None,
    origin: tuple[float, float] | None = None,
    pixel: float = PIXEL,
) -> Path:
    """Write a (bands, H, W) or (H, W) uint8 array; GeoTIFF with ``crs``/``origin``, else by file suffix."""
    array = array[None] if array.ndim == 2 else array
    profile = {
        "count": array.shape[0],
        "height": array.shape[1],
        "width": array.shape[2],
        "dtype": array.dtype,
    }
    if crs is not None:
        profile |= {"driver": "GTiff", "crs": crs, "transform": from_origin(*origin, pixel, pixel)}
    else:
        profile["driver"] = "PNG" if path.suffix == ".png" else "GTiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
    return path


@dataclass(frozen=True)
class Fixture:
    root: Path
    chips: dict[str, Path]
    masks: dict[str, Path]
    polygons: Path
    tiles: dict[str, Path]
    presence_csv: Path


def write_fixture(tmp_path: Path) -> Fixture:
    """Write the fixture files under ``tmp_path``."""
    rng = np.random.default_rng(7)
    geo, plain = tmp_path / "geo", tmp_path / "plain"
    chips, masks = {}, {}
    for name, origin in ORIGINS.items():
        chips[name] = write_raster(
            geo / f"{name}.tif", rng.integers(0, 255, (3, 32, 32), dtype=np.uint8), UTM, origin
        )
    mask_a = np.zeros((32, 32), np.uint8)
    mask_a[PANEL_ROWS, PANEL_COLS] = 255
    mask_b = np.zeros((32, 32), np.uint8)
    mask_b[:4] = 1
    for name, mask in (("chip_a", mask_a), ("chip_b", mask_b), ("chip_c", np.zeros((32, 32), np.uint8))):
        masks[name] = write_raster(geo / f"{name}_mask.tif", mask, UTM, ORIGINS[name])
    x0, y0 = ORIGINS["chip_a"]
    panel = box(x0 + 6 * PIXEL, y0 - 12 * PIXEL, x0 + 16 * PIXEL, y0 - 4 * PIXEL)
    polygons = geo / "panels.geojson"
    gpd.GeoDataFrame({"kind": ["roof"]}, geometry=[panel], crs=UTM).to_crs("EPSG:4326").to_file(polygons)
    tiles = {
        f"tile_{i}": write_raster(plain / f"tile_{i}.png", rng.integers(0, 255, (3, 16, 16), dtype=np.uint8))
        for i in range(3)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tiles["tile_0"]) as src:
            pixels = src.read()
    tiles["dup_of_0"] = write_raster(plain / "dup_of_0.tif", pixels)
    presence_csv = plain / "presence.csv"
    presence_csv.write_text("file,has_panels\ntile_0.png,1\ntile_1.png,0\ntile_2.png,0\ndup_of_0.tif,1\n")
    return Fixture(tmp_path, chips, masks, polygons, tiles, presence_csv)
