"""Reading what the catalog needs to know about an image or mask raster."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window
from shapely.geometry import Polygon

from .errors import ItemRejected

_STRIP_BYTES = 32 << 20


@dataclass(frozen=True)
class RasterInfo:
    """Grid and georeferencing of one raster (``crs`` is None for plain pictures).

    ``bands`` are GDAL colour interpretations, e.g. ``("red", "green", "blue")`` or ``("palette",)`` for an
    8-bit colour-mapped PNG that readers must expand to RGB.
    """

    path: Path
    height: int
    width: int
    count: int
    dtype: str
    bands: tuple[str, ...]
    crs: CRS | None
    transform: Affine

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def footprint(self) -> Polygon:
        """Outline of the raster's pixels in its own CRS."""
        corners = [(0, 0), (self.width, 0), (self.width, self.height), (0, self.height)]
        return Polygon([self.transform @ corner for corner in corners])

    @property
    def crs_string(self) -> str | None:
        """``EPSG:<code>`` when the CRS has one, else its WKT; None without CRS."""
        if self.crs is None:
            return None
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    def pixel_size_m(self) -> float | None:
        """Mean pixel size in metres, when the CRS is projected; else None."""
        if self.crs is None or not self.crs.is_projected:
            return None
        _, metres_per_unit = self.crs.linear_units_factor
        x_res = float(np.hypot(self.transform.a, self.transform.d))
        y_res = float(np.hypot(self.transform.b, self.transform.e))
        return (x_res + y_res) / 2 * metres_per_unit


def open_raster(path: Path) -> rasterio.DatasetReader:
    """Open ``path`` with rasterio, silencing the warning plain pictures (PNG/JPEG) give."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def raster_info(src: rasterio.DatasetReader) -> RasterInfo:
    """Describe an open dataset."""
    return RasterInfo(
        path=Path(src.name),
        height=src.height,
        width=src.width,
        count=src.count,
        dtype=src.dtypes[0],
        bands=tuple(interp.name for interp in src.colorinterp),
        crs=src.crs,
        transform=src.transform,
    )


def iter_strips(src: rasterio.DatasetReader) -> Iterator[np.ndarray]:
    """Every pixel of ``src`` as (rows, width, bands) strips, top to bottom, in bounded memory."""
    row_bytes = src.width * src.count * np.dtype(src.dtypes[0]).itemsize
    rows = max(1, _STRIP_BYTES // max(row_bytes, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for top in range(0, src.height, rows):
            window = Window(0, top, src.width, min(rows, src.height - top))
            yield np.moveaxis(src.read(window=window), 0, -1)


def inspect_image(path: Path) -> tuple[RasterInfo, str]:
    """Read every pixel of an image (so truncated files are caught) and return its grid and pixel MD5.

    The MD5 covers the shape, dtype and the pixels in row-major (row, column, band) order, so the same
    picture stored as PNG or GeoTIFF gives the same digest.
    """
    try:
        with open_raster(path) as src:
            info = raster_info(src)
            digest = hashlib.md5(f"{info.height}x{info.width}x{info.count}:{info.dtype}:".encode())
            for strip in iter_strips(src):
                digest.update(np.ascontiguousarray(strip).tobytes())
    except (RasterioError, OSError) as exc:
        raise ItemRejected(f"image is not readable by rasterio: {exc}") from None
    return info, digest.hexdigest()
