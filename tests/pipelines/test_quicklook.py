"""Quicklooks: decimated, stretched, transparent on nodata, and placed where a Web Mercator map puts them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fixtures.scenes import write_scene
from PIL import Image
from pyproj import Transformer

from pipelines.errors import MissingGeoreferenceError
from pipelines.pictures.quicklook import render


def _pixel(picture: np.ndarray, bounds, crs: str, x: float, y: float) -> np.ndarray:
    """The quicklook pixel at scene coordinates (x, y), placed linearly in Web Mercator between the bounds."""
    west, south, east, north = bounds
    (x0, x1), (y0, y1) = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(
        [west, east], [south, north]
    )
    mx, my = Transformer.from_crs(crs, "EPSG:3857", always_xy=True).transform(x, y)
    row = int((y1 - my) / (y1 - y0) * picture.shape[0])
    col = int((mx - x0) / (x1 - x0) * picture.shape[1])
    return picture[row, col].astype(int)


@pytest.mark.parametrize(("crs", "layout"), [("EPSG:32632", "rgb"), ("EPSG:2056", "rgb"), ("EPSG:32632", "palette")])
def test_panel_and_nodata_show_where_they_are(tmp_path, crs, layout):
    origin = (500_000.0, 5_300_000.0) if crs == "EPSG:32632" else (2_600_000.0, 1_200_000.0)
    spec = write_scene(
        tmp_path / "scene.tif",
        width=300,
        height=200,
        panels=[(40, 40, 100, 120)],
        crs=crs,
        origin=origin,
        nodata=0,
        nodata_box=(150, 200, 200, 300),
        layout=layout,
    )
    quicklook = render(spec.path, max_size=128)
    picture = np.asarray(Image.open(io.BytesIO(quicklook.png)))
    assert picture.shape[2] == 4 and max(picture.shape[:2]) == 128
    centre = spec.panels[0].centroid
    red, green, blue, alpha = _pixel(picture, quicklook.bounds, crs, centre.x, centre.y)
    assert alpha == 255 and blue > red + 50 and blue > green + 50
    hole = spec.transform @ (250, 175)
    assert _pixel(picture, quicklook.bounds, crs, *hole)[3] == 0
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(centre.x, centre.y)
    west, south, east, north = quicklook.bounds
    assert west < lon < east and south < lat < north


def test_small_rasters_are_not_enlarged(tmp_path):
    spec = write_scene(tmp_path / "small.tif", width=40, height=30, panels=[])
    picture = Image.open(io.BytesIO(render(spec.path).png))
    assert max(picture.size) <= 45


def test_raster_without_crs_has_no_place_on_a_map(tmp_path):
    spec = write_scene(tmp_path / "plain.tif", width=20, height=20, panels=[], crs=None)
    with pytest.raises(MissingGeoreferenceError, match="no CRS"):
        render(spec.path)
