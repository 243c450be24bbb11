"""Leak-proof split assignment: items are grouped, and a group's hash alone decides its split.

Everything that must not be separated (duplicates, neighbouring or overlapping tiles) shares a group key, so
it always lands in the same split; the assignment needs no state and never changes when items are added.
"""

from __future__ import annotations

import hashlib

from shapely.geometry import Polygon

from .geo import transformer

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.70, "val": 0.15, "test": 0.15}
CELL_SIZE_M = 250.0


def assign_split(group: str) -> str:
    """``train``/``val``/``test`` (70/15/15) from a stable hash of ``group``."""
    fraction = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 16**8
    cumulative = 0.0
    for split in SPLITS:
        cumulative += SPLIT_FRACTIONS[split]
        if fraction < cumulative:
            return split
    return SPLITS[-1]


def content_group(pixel_md5: str) -> str:
    """Group of a non-georeferenced tile: its pixels, so exact duplicates stay together."""
    return f"pixels:{pixel_md5}"


def spatial_group(footprint: Polygon, crs: object, cell_m: float = CELL_SIZE_M) -> str:
    """Group of a georeferenced tile (footprint in ``crs``): the ``cell_m`` square cell holding its centre.

    Cells are laid out in the WGS84 UTM zone of the centre rather than in the image CRS, so images of the
    same place delivered in different CRSs still share a group.
    """
    centre = footprint.centroid
    lon, lat = transformer(crs, "EPSG:4326").transform(centre.x, centre.y)
    zone = int((lon + 180) // 6) % 60 + 1
    utm = f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"
    x, y = transformer("EPSG:4326", utm).transform(lon, lat)
    return f"utm{zone}{'N' if lat >= 0 else 'S'}:{cell_m:g}m:{int(x // cell_m)}:{int(y // cell_m)}"
