"""Coordinate transformations shared by the catalog modules."""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer


@lru_cache(maxsize=64)
def _cached_transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def transformer(src: object, dst: object) -> Transformer:
    """Cached x/y-ordered transformer between any two CRS inputs pyproj understands (rasterio CRS included)."""
    return _cached_transformer(CRS.from_user_input(src).to_wkt(), CRS.from_user_input(dst).to_wkt())
