"""Vectorising thresholded probability strips into panel polygons (in source pixel coordinates).

Polygons are built strip by strip with ``rasterio.features.shapes`` and joined across strip seams afterwards.
Pixel coordinates are integers, exact in floating point, so edges shared across a seam match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from pipelines.timing import timed

# 4-connectivity, the same rule rasterio.features.shapes uses by default.
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class PixelPolygons:
    """Polygons in source pixel coordinates with their pixel count and summed probability (0..1 per pixel)."""

    geometry: np.ndarray  # shapely Polygons
    pixels: np.ndarray  # int64
    probability_sum: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.geometry)

    def take(self, keep: np.ndarray) -> PixelPolygons:
        """The polygons selected by ``keep`` (a boolean mask or indexes)."""
        return PixelPolygons(self.geometry[keep], self.pixels[keep], self.probability_sum[keep])

    @classmethod
    def concatenate(cls, parts: Sequence[PixelPolygons]) -> PixelPolygons:
        """The polygons of ``parts`` in order."""
        if not parts:
            return cls(np.empty(0, dtype=object), np.empty(0, np.int64), np.empty(0))
        return cls(
            np.concatenate([p.geometry for p in parts]),
            np.concatenate([p.pixels for p in parts]),
            np.concatenate([p.probability_sum for p in parts]),
        )


def panel_pixels(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Where a uint8 probability raster (0-255, as scoring writes it) reaches ``threshold``: the panel pixels."""
    return probability >= np.uint8(np.ceil(threshold * 255))


class StripVectoriser:
    """Collects the panel polygons of consecutive row strips of one scene, to be joined across seams afterwards."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._parts: list[PixelPolygons] = []

    @timed("vectorise")
    def add(self, row: int, probability: np.ndarray) -> None:
        """Vectorise a uint8 probability strip whose first row is source row ``row``."""
        panel = panel_pixels(probability, self.threshold)
        labels, count = ndimage.label(panel, structure=FOUR_CONNECTED)
        if count == 0:
            return
        pixels = np.bincount(labels.ravel(), minlength=count + 1)
        sums = np.bincount(labels.ravel(), weights=probability.ravel() / 255.0, minlength=count + 1)
        shapes = features.shapes(
            labels.astype(np.int32), mask=panel, connectivity=4, transform=Affine.translation(0, row)
        )
        geoms, ids = zip(*((shapely.geometry.shape(g), int(v)) for g, v in shapes))
        ids = np.asarray(ids)
        self._parts.append(PixelPolygons(np.asarray(geoms, dtype=object), pixels[ids], sums[ids]))

    def polygons(self) -> PixelPolygons:
        """Every strip's polygons in strip order, not yet joined across seams."""
        return PixelPolygons.concatenate(self._parts)


@timed("vectorise")
def join_across_seams(polys: PixelPolygons, seams: np.ndarray) -> PixelPolygons:
    """Polygons sharing an edge across one of the ``seams`` (first rows of strips) merged into one."""
    if len(seams) == 0 or len(polys) < 2:
        return polys
    bounds = shapely.bounds(polys.geometry)
    at_seam = np.flatnonzero(np.isin(bounds[:, 1], seams) | np.isin(bounds[:, 3], seams))
    tree = shapely.STRtree(polys.geometry[at_seam])
    left, right = tree.query(polys.geometry[at_seam], predicate="intersects")
    pairs = left < right
    a, b = at_seam[left[pairs]], at_seam[right[pairs]]
    # Only a shared edge joins; polygons meeting at a corner stay apart, as within a strip.
    shared = shapely.length(shapely.intersection(polys.geometry[a], polys.geometry[b])) > 0
    n = len(polys)
    graph = sparse.coo_matrix((np.ones(shared.sum()), (a[shared], b[shared])), shape=(n, n))
    count, component = connected_components(graph, directed=False)
    if count == n:
        return polys
    order = np.argsort(component, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(component[order])) + 1)  # one group per component id
    geometry = np.array(
        [polys.geometry[g[0]] if len(g) == 1 else shapely.union_all(polys.geometry[g]) for g in groups],
        dtype=object,
    )
    return PixelPolygons(
        geometry,
        np.bincount(component, weights=polys.pixels, minlength=count).astype(np.int64),
        np.bincount(component, weights=polys.probability_sum, minlength=count),
    )


def select(polys: PixelPolygons, min_pixels: float, min_confidence: float = 0.0) -> PixelPolygons:
    """The polygons of at least ``min_pixels`` pixels and a mean probability of at least ``min_confidence``."""
    confidence = polys.probability_sum / np.maximum(polys.pixels, 1)
    return polys.take((polys.pixels >= min_pixels) & (confidence >= min_confidence))


@timed("vectorise")
def outline(polys: PixelPolygons, simplify_px: float, regularise: bool) -> PixelPolygons:
    """The polygons simplified (topology-preserving) and optionally squared up: regularising replaces a polygon by
    its minimum rotated rectangle when it fills at least 85 % of it."""
    geometry = (
        shapely.simplify(polys.geometry, simplify_px, preserve_topology=True)
        if simplify_px > 0
        else polys.geometry
    )
    if regularise and len(geometry):
        rectangles = shapely.oriented_envelope(geometry)
        fits = shapely.area(geometry) >= 0.85 * shapely.area(rectangles)
        geometry = np.where(fits, rectangles, geometry)
    return PixelPolygons(geometry, polys.pixels, polys.probability_sum)
