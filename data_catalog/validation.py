"""Checks a :class:`Candidate` must pass before it is catalogued; each failure names a specific reason."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from rasterio.errors import RasterioError

from .checksums import bytes_checksum, file_checksum
from .errors import ItemRejected
from .items import Candidate
from .rasters import RasterInfo, inspect_image, iter_strips, open_raster, raster_info
from .splits import content_group, spatial_group

GSD_TOLERANCE = 0.05
_MASK_VALUE_SETS = ({0, 1}, {0, 255})


@dataclass(frozen=True)
class ValidatedItem:
    """A candidate that passed every check, with what the checks learned about it.

    ``label_geojson`` holds the polygons picked for this image (WGS84 GeoJSON) for ``polygons`` items.
    """

    candidate: Candidate
    image: RasterInfo
    gsd_m: float
    has_panels: bool
    group: str
    label_checksum: str | None
    label_geojson: bytes | None = None


def validate_candidate(candidate: Candidate) -> ValidatedItem:
    """Run every check on ``candidate``; raise :class:`ItemRejected` with the reason of the first failure."""
    if not candidate.image_path.is_file():
        raise ItemRejected(f"image file not found: {candidate.image_path}")
    image, pixel_md5 = inspect_image(candidate.image_path)
    gsd_m = _ground_sample_distance(image, candidate.gsd_m)
    label_checksum, label_geojson = None, None
    if candidate.label_kind == "mask":
        has_panels = _check_mask(candidate, image)
        label_checksum = file_checksum(candidate.mask_path)
    elif candidate.label_kind == "polygons":
        picked = _pick_polygons(candidate, image)
        has_panels = not picked.empty
        label_geojson = picked.to_crs("EPSG:4326").to_json(drop_id=True).encode()
        label_checksum = bytes_checksum(label_geojson)
    else:
        if candidate.has_panels not in (True, False):
            raise ItemRejected(f"presence label must be 0 or 1, got {candidate.has_panels!r}")
        has_panels = candidate.has_panels
    if candidate.group:
        group = candidate.group
    elif image.crs is not None:
        group = spatial_group(image.footprint, image.crs)
    else:
        group = content_group(pixel_md5)
    return ValidatedItem(candidate, image, gsd_m, has_panels, group, label_checksum, label_geojson)


def _ground_sample_distance(image: RasterInfo, given: float | None) -> float:
    derived = image.pixel_size_m()
    if given is None:
        if derived is None:
            where = f"its CRS {image.crs_string} is not projected" if image.crs else "it has no CRS"
            raise ItemRejected(f"ground sample distance unknown: pass gsd (metres), {where}")
        return derived
    if not np.isfinite(given) or given <= 0:
        raise ItemRejected(f"ground sample distance must be a positive number of metres, got {given}")
    if derived is not None and abs(given - derived) > GSD_TOLERANCE * derived:
        raise ItemRejected(
            f"gsd {given:g} m given but the image pixel size is {derived:g} m in {image.crs_string}"
        )
    return float(given)


def _check_mask(candidate: Candidate, image: RasterInfo) -> bool:
    """Check the mask fits the image and holds {0,1} or {0,255}; return whether any panel pixel is set."""
    path = candidate.mask_path
    if path is None or not path.is_file():
        raise ItemRejected(f"mask file not found: {path}")
    try:
        with open_raster(path) as src:
            mask = raster_info(src)
            if mask.shape != image.shape:
                raise ItemRejected(
                    f"mask {path.name} is {mask.height}x{mask.width}, image is {image.height}x{image.width}"
                )
            if mask.count != 1:
                raise ItemRejected(f"mask {path.name} has {mask.count} bands, expected 1")
            if (
                mask.crs is not None
                and image.crs is not None
                and (mask.crs != image.crs or not mask.transform.almost_equals(image.transform))
            ):
                raise ItemRejected(
                    f"mask {path.name} is not on the image's pixel grid (CRS or transform differ)"
                )
            values: set[int] = set()
            for strip in iter_strips(src):
                values.update(np.unique(strip).tolist())
    except (RasterioError, OSError) as exc:
        raise ItemRejected(f"mask {path.name} is not readable by rasterio: {exc}") from None
    if not any(values <= allowed for allowed in _MASK_VALUE_SETS):
        shown = ", ".join(str(v) for v in sorted(values)[:8])
        raise ItemRejected(f"mask {path.name} values must be {{0,1}} or {{0,255}}, found {{{shown}}}")
    return bool(values - {0})


def _pick_polygons(candidate: Candidate, image: RasterInfo) -> gpd.GeoDataFrame:
    """Polygons of the collection that intersect the image footprint (in the image CRS)."""
    if image.crs is None:
        raise ItemRejected("image has no CRS, so polygons cannot be placed on it (use --masks or --labels)")
    polygons = candidate.polygons
    if polygons is None:
        raise ItemRejected("no polygons given")
    in_image_crs = polygons.to_crs(image.crs)
    return polygons[in_image_crs.intersects(image.footprint).to_numpy()]
