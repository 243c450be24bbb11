"""Panel attributes: pixel polygons -> a PanelSet (GeoDataFrame in the scene's CRS) with areas and centroids."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from pipelines.scenes import GEOD, Scene
from pipelines.scoring.vectorising import PixelPolygons

# Column order of every PanelSet and of the exported layers (panel_id is numbered at export).
COLUMNS = [
    "panel_id", "source", "confidence", "presence", "area_m2", "capacity_kwp", "length_m", "width_m",
    "orientation_deg", "centroid_lon", "centroid_lat", "model",
]
# Rated (STC) power per m2 of module seen from above: a crystalline silicon module of about 20 % efficiency (400 W on
# 2 m2). Older modules rate less (15 %: 0.15 kWp/m2) and a tilted module's area exceeds its footprint (by 15 % at
# 30 degrees), so the estimate is a first figure for a fleet, not any one array's nameplate.
MODULE_KWP_PER_M2 = 0.2


def panel_set(polys: PixelPolygons, scene: Scene, model: str, presence: np.ndarray) -> gpd.GeoDataFrame:
    """Panels of one scene in its CRS (pixel coordinates without one), with attributes.

    ``confidence`` is a panel's mean pixel probability; ``presence`` the classifier's probability of a window
    centred on it (``verification``; NaN where not judged).

    Areas, centroids and the sides of each panel's minimum rotated rectangle (``length_m`` >= ``width_m``) are
    computed in the UTM zone of the panels: projected CRSs such as Web Mercator do not preserve area.
    ``capacity_kwp`` is the area at ``MODULE_KWP_PER_M2``. ``orientation_deg`` is the true bearing of the
    rectangle's long side, clockwise from north in [0, 180).
    Without a CRS, areas and sides come from the user's ground sample distance, and there is neither a lon/lat
    centroid nor a north to measure orientation from.
    """
    t = scene.transform
    geometry = shapely.transform(polys.geometry, lambda xy: np.column_stack(t @ (xy[:, 0], xy[:, 1])))
    panels = gpd.GeoDataFrame(
        {
            "source": pd.Series([str(scene.path)] * len(polys), dtype=object),
            "confidence": polys.probability_sum / np.maximum(polys.pixels, 1),
            "presence": presence,
            "model": pd.Series([model] * len(polys), dtype=object),
        },
        geometry=gpd.GeoSeries(geometry, crs=scene.crs),
    )
    if scene.georeferenced and len(panels):
        metric = panels.geometry.to_crs(panels.estimate_utm_crs())
        panels["area_m2"] = metric.area.to_numpy()
        length, width, (start, end) = _long_and_short_sides(metric.to_numpy())
        to_lonlat = Transformer.from_crs(metric.crs, "EPSG:4326", always_xy=True)
        bearing = GEOD.inv(*to_lonlat.transform(*start.T), *to_lonlat.transform(*end.T))[0]
        panels["length_m"], panels["width_m"], panels["orientation_deg"] = length, width, np.mod(bearing, 180.0)
        centroids = metric.centroid.to_crs("EPSG:4326")
        panels["centroid_lon"], panels["centroid_lat"] = centroids.x.to_numpy(), centroids.y.to_numpy()
    else:
        gsd_x, gsd_y = scene.gsd_m
        ground = shapely.transform(polys.geometry, lambda xy: xy * (gsd_x, gsd_y))
        panels["area_m2"] = shapely.area(ground)
        panels["length_m"], panels["width_m"], _ = _long_and_short_sides(ground)
        panels["orientation_deg"] = panels["centroid_lon"] = panels["centroid_lat"] = np.nan
    panels["capacity_kwp"] = panels["area_m2"] * MODULE_KWP_PER_M2
    panels["panel_id"] = np.arange(1, len(panels) + 1)
    return panels[[*COLUMNS, "geometry"]]


def _long_and_short_sides(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Long and short side lengths of each polygon's minimum rotated rectangle (in the polygons' units) and the
    (start, end) points (N, 2) of its long side."""
    if len(polygons) == 0:
        empty = np.zeros((0, 2))
        return np.zeros(0), np.zeros(0), (empty, empty)
    rectangles = shapely.oriented_envelope(polygons)
    coords, index = shapely.get_coordinates(shapely.get_exterior_ring(rectangles), return_index=True)
    first = np.searchsorted(index, np.arange(len(polygons)))
    p0, p1, p2 = coords[first], coords[first + 1], coords[first + 2]
    a, b = np.linalg.norm(p1 - p0, axis=1), np.linalg.norm(p2 - p1, axis=1)
    along_a = (a >= b)[:, None]
    return np.maximum(a, b), np.minimum(a, b), (np.where(along_a, p0, p1), np.where(along_a, p1, p2))
