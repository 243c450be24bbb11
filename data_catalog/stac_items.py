"""Conversion between :class:`LabelledItem` and STAC items (label, projection and file extensions).

A catalogued item is one STAC Item with an ``image`` asset (role ``data``) and, for masks and polygons, a
``labels`` asset. Hrefs of files inside the catalog directory are stored relative to the item JSON; images
added from elsewhere are referenced by absolute path, so adding a folder of large scenes never copies them.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime
from pathlib import Path

import pystac
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension

with warnings.catch_warnings():
    # pystac flags the label extension as unmaintained; it is still the STAC way to describe training labels.
    warnings.filterwarnings("ignore", "The PySTAC Label Extension is deprecated", DeprecationWarning)
    from pystac.extensions.label import LabelClasses, LabelExtension, LabelTask, LabelType

from .errors import CatalogFormatError
from .geo import transformer
from .items import LabelledItem
from .rasters import RasterInfo

PREFIX = "solarscan:"
_CLASSES = [LabelClasses.create(classes=["background", "solar_panel"], name=None)]
_LABEL_DESCRIPTIONS = {
    "mask": "Raster mask on the image grid: value > 0 marks solar panel pixels.",
    "polygons": "Solar panel outlines (WGS84 GeoJSON); every feature is a panel.",
    "presence": f"Tile-level presence: {PREFIX}has_panels tells whether the tile shows solar panels.",
}
_MEDIA_TYPES = {
    ".png": pystac.MediaType.PNG,
    ".jpg": pystac.MediaType.JPEG,
    ".jpeg": pystac.MediaType.JPEG,
    ".geojson": pystac.MediaType.GEOJSON,
    ".json": pystac.MediaType.GEOJSON,
}


def to_stac(
    item: LabelledItem, image: RasterInfo, item_href: Path, catalog_dir: Path, created: datetime
) -> pystac.Item:
    """STAC Item for ``item`` whose JSON will live at ``item_href``; ``created`` is also its ``datetime``.

    Acquisition dates are unknown for most sources, so ``datetime`` records when the item was catalogued.
    """
    geometry, bbox = None, None
    if image.crs is not None:
        to_wgs84 = transformer(image.crs, "EPSG:4326")
        ring = [to_wgs84.transform(x, y) for x, y in image.footprint.exterior.coords]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        xs, ys = zip(*ring)
        bbox = [min(xs), min(ys), max(xs), max(ys)]
    properties = {
        "gsd": item.gsd_m,
        "created": pystac.utils.datetime_to_str(created),
        PREFIX + "label_kind": item.label_kind,
        PREFIX + "has_panels": item.has_panels,
        PREFIX + "source": item.source,
        PREFIX + "licence": item.licence,
        PREFIX + "split": item.split,
        PREFIX + "group": item.group,
        PREFIX + "bands": list(item.bands),
        PREFIX + "properties": dict(item.properties),
    }
    stac_item = pystac.Item(item.id, geometry, bbox, created, properties)
    stac_item.set_self_href(str(item_href))
    has_code = item.crs is not None and item.crs.startswith("EPSG:")
    ProjectionExtension.ext(stac_item, add_if_missing=True).apply(
        code=item.crs if has_code else None,
        wkt2=None if has_code else item.crs,
        shape=list(item.shape),
        transform=list(image.transform)[:6] if image.crs is not None else None,
    )
    LabelExtension.ext(stac_item, add_if_missing=True).apply(
        label_description=_LABEL_DESCRIPTIONS[item.label_kind],
        label_type=LabelType.RASTER if item.label_kind == "mask" else LabelType.VECTOR,
        label_properties=None,
        label_classes=_CLASSES,
        label_tasks=[LabelTask.SEGMENTATION if item.label_kind != "presence" else LabelTask.CLASSIFICATION],
    )
    FileExtension.add_to(stac_item)
    _add_asset(
        stac_item, "image", item.image_path, item.image_checksum, ["data"], image.crs is not None, catalog_dir
    )
    if item.label_path is not None:
        role = "labels-raster" if item.label_kind == "mask" else "labels-vector"
        _add_asset(
            stac_item,
            "labels",
            item.label_path,
            item.label_checksum,
            ["labels", role],
            image.crs is not None,
            catalog_dir,
        )
    return stac_item


def from_stac(stac_item: pystac.Item) -> LabelledItem:
    """Read back a :class:`LabelledItem`; raise :class:`CatalogFormatError` naming the item when fields lack."""
    props = stac_item.properties
    try:
        image = stac_item.assets["image"]
        labels = stac_item.assets.get("labels")
        return LabelledItem(
            id=stac_item.id,
            image_path=Path(image.get_absolute_href()),
            label_kind=props[PREFIX + "label_kind"],
            label_path=Path(labels.get_absolute_href()) if labels else None,
            has_panels=props[PREFIX + "has_panels"],
            gsd_m=props.get("gsd"),
            crs=props.get("proj:code") or props.get("proj:wkt2"),
            source=props[PREFIX + "source"],
            licence=props[PREFIX + "licence"],
            split=props[PREFIX + "split"],
            group=props[PREFIX + "group"],
            shape=tuple(props["proj:shape"]),
            bands=tuple(props[PREFIX + "bands"]),
            image_checksum=image.extra_fields["file:checksum"],
            label_checksum=labels.extra_fields["file:checksum"] if labels else None,
            properties=props.get(PREFIX + "properties", {}),
        )
    except (KeyError, TypeError) as exc:
        raise CatalogFormatError(f"catalog item {stac_item.id} lacks field {exc}") from None


def _add_asset(
    stac_item: pystac.Item,
    key: str,
    path: Path,
    checksum: str | None,
    roles: list[str],
    georeferenced: bool,
    catalog_dir: Path,
) -> None:
    path = path.resolve()
    item_dir = Path(stac_item.get_self_href()).parent
    href = os.path.relpath(path, item_dir) if path.is_relative_to(catalog_dir.resolve()) else str(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        media_type = pystac.MediaType.GEOTIFF if georeferenced else pystac.MediaType.TIFF
    else:
        media_type = _MEDIA_TYPES.get(suffix)
    asset = pystac.Asset(href, media_type=media_type, roles=roles)
    stac_item.add_asset(key, asset)
    FileExtension.ext(asset).apply(checksum=checksum, size=path.stat().st_size)
