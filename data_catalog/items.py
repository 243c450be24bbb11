"""The records the catalog keeps: :class:`LabelledItem` (catalogued) and :class:`Candidate` (proposed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import geopandas as gpd

LabelKind = Literal["mask", "polygons", "presence"]
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)


@dataclass(frozen=True)
class LabelledItem:
    """One labelled image of the catalog.

    ``label_kind`` says what the annotation is: ``mask`` (a raster on the image grid, >0 = panel), ``polygons``
    (a GeoJSON of panel outlines in WGS84) or ``presence`` (tile-level yes/no in ``has_panels``, no label file).
    ``has_panels`` is known for every kind (for masks and polygons: whether any panel pixel/polygon exists).
    A ``presence`` item with ``has_panels=False`` states that the tile holds no panel anywhere, so a trainer may
    treat it as an all-zero mask; one with ``has_panels=True`` says nothing about where the panels are.
    ``crs`` is the image CRS as ``"EPSG:<code>"`` (WKT when it has no EPSG code) or None for plain pictures.
    ``group`` is the leak-proof key the ``split`` is derived from. ``shape`` is (height, width) and ``bands``
    the colour interpretation of each image band (``("palette",)``: expand the colour map to RGB). Checksums are sha2-256 multihashes (hex)
    as in the STAC file extension. ``properties`` holds source-specific metadata (e.g. Bern's
    ``registry_first_operation``).
    """

    id: str
    image_path: Path
    label_kind: LabelKind
    label_path: Path | None
    has_panels: bool | None
    gsd_m: float | None
    crs: str | None
    source: str
    licence: str
    split: str
    group: str
    shape: tuple[int, int]
    bands: tuple[str, ...]
    image_checksum: str
    label_checksum: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Candidate:
    """An image and its label proposed for the catalog; validated before it becomes a :class:`LabelledItem`.

    Exactly one label is given, matching ``label_kind``: ``mask_path``, ``polygons`` (the whole collection;
    validation keeps the polygons that intersect this image) or ``has_panels``. ``name`` becomes the item id
    suffix (default: the image stem); ``group`` overrides the derived split group.
    """

    image_path: Path
    label_kind: LabelKind
    mask_path: Path | None = None
    polygons: gpd.GeoDataFrame | None = field(default=None, compare=False)
    has_panels: bool | None = None
    gsd_m: float | None = None
    source: str = "user"
    licence: str = "unknown"
    group: str | None = None
    name: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def display_name(self) -> str:
        """How errors about this candidate name it: the image file name."""
        return self.image_path.name
