"""Verifying candidate panels: the tile classifier judges a window centred on each, as it judged training chips.

Dense presence (``presence_logits``) judges windows laid one stride-32 cell apart, so a lone array often lies near
the edge of every window that holds it, and the decoder's own confidence is all that judges a polygon. A window of
the bundle's tile centred on the candidate shows the classifier the array as it saw training chips.
"""

from __future__ import annotations

import numpy as np
import shapely

from pipelines.predictors import PRESENCE_THRESHOLD, Predictor
from pipelines.scenes import Scene
from pipelines.scoring.reading import SceneReader, gdal_cache_env, iter_batches
from pipelines.scoring.vectorising import PixelPolygons
from pipelines.tiling import ModelGrid, Tile, model_grid


def least_presence(predictor: Predictor, min_presence: float | None) -> float:
    """The least centred-window presence of a kept polygon: ``min_presence``, or the bundle's (0 without one)."""
    return predictor.metadata.thresholds.get(PRESENCE_THRESHOLD, 0.0) if min_presence is None else min_presence


def centred_tiles(points: np.ndarray, grid: ModelGrid, size: int) -> list[Tile]:
    """Model-grid tiles of ``size`` centred on source-pixel points (N, 2) of (x, y); near the scene's edge they
    reach past it, padded as smaller chips were in training (moved inside instead, the candidate lies at the
    window's edge, where the classifier misses lone arrays)."""
    cols = np.rint(points[:, 0] / grid.scale_x - size / 2).astype(int)
    rows = np.rint(points[:, 1] / grid.scale_y - size / 2).astype(int)
    return [Tile(int(r), int(c), size) for r, c in zip(rows, cols)]


def centred_presence(scene: Scene, points: np.ndarray, extents: np.ndarray, predictor: Predictor,
                     batch_size: int) -> np.ndarray:
    """The classifier's panel probability (N,) of a window of the bundle's tile centred on each candidate of
    ``scene`` (``Predictor.presence``), given its centre (x, y) and extent (width, height) in source pixels; NaN,
    not judged, for candidates the window would not hold whole. The classifier learnt on chips that hold their
    arrays: on a validation scene a window inside a 190 m array gave 0.33 to 0.99 as it moved by a pixel or 16."""
    meta = predictor.metadata
    grid = model_grid(scene, meta.gsd_m)
    fits = np.all(extents / (grid.scale_x, grid.scale_y) <= meta.tile_size, axis=1)
    presence = np.full(len(points), np.nan)
    if not fits.any():
        return presence
    tiles = centred_tiles(points[fits], grid, meta.tile_size)
    with gdal_cache_env(), SceneReader(scene, grid, meta.norm_mean, meta.norm_std) as reader:
        presence[fits] = np.concatenate(
            [predictor.presence(b.pixels) for b in iter_batches(reader, tiles, batch_size, 0)]
        )
    return presence


def verify(polys: PixelPolygons, scene: Scene, predictor: Predictor, min_presence: float,
           batch_size: int) -> tuple[PixelPolygons, np.ndarray]:
    """The polygons (source pixel coordinates, not yet simplified) not judged under ``min_presence`` by
    ``centred_presence``, and their presence (NaN where not judged: all of them at ``min_presence`` 0)."""
    if min_presence <= 0:
        return polys, np.full(len(polys), np.nan)
    centroids = shapely.get_coordinates(shapely.centroid(polys.geometry))
    bounds = shapely.bounds(polys.geometry)
    presence = centred_presence(scene, centroids, bounds[:, 2:] - bounds[:, :2], predictor, batch_size)
    keep = ~(presence < min_presence)
    return polys.take(keep), presence[keep]
