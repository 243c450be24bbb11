"""Panel attributes: ground areas, the sides of each panel's minimum rotated rectangle and its true bearing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import CRS, Proj
from shapely.geometry import Polygon

from pipelines.scenes import Scene
from pipelines.scoring.attributes import panel_set
from pipelines.scoring.vectorising import PixelPolygons

GSD = 0.5


def _scene(crs: str | None, origin: tuple[float, float]) -> Scene:
    transform = Affine(GSD, 0, origin[0], 0, -GSD, origin[1]) if crs else Affine.identity()
    return Scene(Path("scene.tif"), CRS.from_user_input(crs) if crs else None, transform, 400, 400, "uint8",
                 (GSD, GSD), (1, 2, 3))


def _rectangle(centre: tuple[float, float], length: float, width: float, bearing_deg: float) -> Polygon:
    """A length x width rectangle in map coordinates whose long side points ``bearing_deg`` east of grid north."""
    along = np.array([np.sin(np.radians(bearing_deg)), np.cos(np.radians(bearing_deg))])
    across = np.array([along[1], -along[0]])
    c = np.asarray(centre)
    corners = [c + s * along * length / 2 + t * across * width / 2 for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return Polygon(corners)


def _panels(scene: Scene, map_polygons: list[Polygon]):
    to_pixels = ~scene.transform
    pixel = [shapely.transform(p, lambda xy: np.column_stack(to_pixels @ (xy[:, 0], xy[:, 1]))) for p in map_polygons]
    polys = PixelPolygons(np.array(pixel, dtype=object), np.full(len(pixel), 100), np.full(len(pixel), 90.0))
    return panel_set(polys, scene, "test", np.full(len(pixel), np.nan))


def test_sides_and_bearing_on_the_central_meridian():
    scene = _scene("EPSG:32632", (500_000.0, 5_300_000.0))  # easting 500 km: grid north is true north
    rectangles = [_rectangle((500_050.0, 5_299_950.0), 20.0, 5.0, 30.0),
                  _rectangle((500_120.0, 5_299_900.0), 8.0, 3.0, 135.0)]
    panels = _panels(scene, rectangles)
    np.testing.assert_allclose(panels["length_m"], [20.0, 8.0], rtol=1e-3)
    np.testing.assert_allclose(panels["width_m"], [5.0, 3.0], rtol=1e-3)
    np.testing.assert_allclose(panels["orientation_deg"], [30.0, 135.0], atol=0.01)
    np.testing.assert_allclose(panels["area_m2"], [100.0, 24.0], rtol=1e-3)
    np.testing.assert_allclose(panels["capacity_kwp"], [20.0, 4.8], rtol=1e-3)  # 0.2 kWp per m2 of module


def test_bearing_is_from_true_north_away_from_the_central_meridian():
    easting, northing = 300_000.0, 5_300_000.0  # 2.6 degrees west of zone 32's meridian at 47.8 N
    scene = _scene("EPSG:32632", (easting, northing))
    panels = _panels(scene, [_rectangle((easting + 50, northing - 50), 20.0, 5.0, 30.0)])
    lon, lat = panels[["centroid_lon", "centroid_lat"]].iloc[0]
    convergence = Proj("EPSG:32632").get_factors(lon, lat).meridian_convergence
    assert abs(convergence) > 1.5
    assert abs(panels["orientation_deg"].iloc[0] - 30.0) == pytest.approx(abs(convergence), abs=0.05)
    assert panels["length_m"].iloc[0] == pytest.approx(20.0, rel=2e-3)  # UTM scale within 0.1 % of 1 here


def test_without_a_crs_sides_come_from_the_ground_sample_distance_and_there_is_no_north():
    scene = _scene(None, (0.0, 0.0))
    panels = _panels(scene, [Polygon([(10, 10), (50, 10), (50, 20), (10, 20)])])  # pixels: 40 x 10
    assert (panels["length_m"].iloc[0], panels["width_m"].iloc[0]) == pytest.approx((20.0, 5.0))
    assert panels["capacity_kwp"].iloc[0] == pytest.approx(100.0 * 0.2)
    assert np.isnan(panels["orientation_deg"].iloc[0])
