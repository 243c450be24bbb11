"""Coordinate transformations shared by the catalog modules."""

from __future__ import annotations

from functools import lru_cache

from pyproj import Transformer


@lru_cache(maxsize=64)
def _cached_transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def transformer(src: object, dst: object) -> Transformer:
    """Cached x/y-ordered transformer between two CRSs: strings, or rasterio/pyproj CRS objects."""
    return _cached_transformer(*(crs if isinstance(crs, str) else crs.to_string() for crs in (src, dst)))
