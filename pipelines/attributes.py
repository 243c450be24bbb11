"""Panel attributes: pixel polygons -> a PanelSet (GeoDataFrame in the scene's CRS) with areas and centroids."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pipelines.scenes import Scene
from pipelines.vectorising import PixelPolygons

# Column order of every PanelSet and of the exported layers (panel_id is numbered at export).
COLUMNS = ["panel_id", "source", "confidence", "area_m2", "centroid_lon", "centroid_lat", "model"]


def panel_set(polys: PixelPolygons, scene: Scene, model: str) -> gpd.GeoDataFrame:
    """Panels of one scene in its CRS (pixel coordinates without one), with attributes.

    Areas and centroids are computed in the UTM zone of the panels: projected CRSs such as Web Mercator
    do not preserve area. Without a CRS the area comes from the user's ground sample distance, and
    there is no lon/lat centroid.
    """
    t = scene.transform
    geometry = shapely.transform(polys.geometry, lambda xy: np.column_stack(t @ (xy[:, 0], xy[:, 1])))
    panels = gpd.GeoDataFrame(
        {
            "source": pd.Series([str(scene.path)] * len(polys), dtype=object),
            "confidence": polys.probability_sum / np.maximum(polys.pixels, 1),
            "model": pd.Series([model] * len(polys), dtype=object),
        },
        geometry=gpd.GeoSeries(geometry, crs=scene.crs),
    )
    if scene.georeferenced and len(panels):
        metric = panels.geometry.to_crs(panels.estimate_utm_crs())
        panels["area_m2"] = metric.area.to_numpy()
        centroids = metric.centroid.to_crs("EPSG:4326")
        panels["centroid_lon"], panels["centroid_lat"] = centroids.x.to_numpy(), centroids.y.to_numpy()
    else:
        panels["area_m2"] = shapely.area(geometry) * scene.gsd_m[0] * scene.gsd_m[1]
        panels["centroid_lon"] = panels["centroid_lat"] = np.nan
    panels["panel_id"] = np.arange(1, len(panels) + 1)
    return panels[[*COLUMNS, "geometry"]]
