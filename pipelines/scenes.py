"""Scenes: finding input rasters and describing each one (grid, CRS, bands, ground sample distance)."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from pipelines.errors import BandLayoutError, MissingGeoreferenceError, SceneReadError
from pipelines.normalisation import full_scale

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".vrt", ".jp2", ".png", ".jpg", ".jpeg"})
# Band order assumed for bands that carry no colour interpretation or description (e.g. 4-band RGBN GeoTIFFs).
CANONICAL_BAND_ORDER = ("red", "green", "blue", "nir")
_SUPPORTED_DTYPES = frozenset({"uint8", "uint16", "int16", "float32", "float64"})
GEOD = Geod(ellps="WGS84")  # ground distances and bearings on the WGS 84 ellipsoid


@dataclass(frozen=True)
class Scene:
    """One raster source as scoring sees it.

    ``transform`` maps pixels to scene coordinates: the CRS's coordinates for georeferenced rasters, plain
    pixel coordinates (column, row) for rasters without a CRS, whose ground sample distance comes from the user.
    """

    path: Path
    crs: CRS | None
    transform: Affine
    width: int
    height: int
    dtype: str
    gsd_m: tuple[float, float]  # ground metres per pixel along x and y
    band_indexes: tuple[int, ...]  # 1-based source bands in the model's band order
    # A colour-mapped raster's lookup: for each index, the model's bands in order, then alpha (0: transparent).
    palette: np.ndarray | None = field(default=None, compare=False)
    full_scale: float | None = None  # the integer value that is full brightness, when declared or given (--bit-depth)
    # the other files GDAL reads with it: sidecars (world file, .aux.xml, .ovr), a VRT's sources
    companions: tuple[Path, ...] = ()

    @property
    def georeferenced(self) -> bool:
        """Whether the scene has a CRS (else its polygons stay in pixel coordinates)."""
        return self.crs is not None


def scene_key(path: Path) -> str:
    """A short name for a scene's files that tells apart inputs of the same name in different folders."""
    return hashlib.sha1(str(path).encode()).hexdigest()[:10]


def find_inputs(inputs: Iterable[str | Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Files as named plus the rasters found (recursively) in named folders; absolute, in order, without repeats.

    Paths that do not exist are kept so that scoring reports them as failed inputs.
    """
    excluded = [Path(p).resolve() for p in exclude]
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item).resolve()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if (
                    child.suffix.lower() in RASTER_SUFFIXES
                    and child.is_file()
                    and not any(child.is_relative_to(e) for e in excluded)
                ):
                    found[child] = None
        else:
            found[path] = None
    return list(found)


def open_scene(path: Path, bands: list[str], gsd_m: float | None = None, bit_depth: int | None = None) -> Scene:
    """Describe the raster at ``path`` for a model reading ``bands``; ``gsd_m`` applies only to rasters without a CRS,
    ``bit_depth`` (the bits of data its integer pixels hold) to every integer raster, over any it declares."""
    if not path.is_file():
        raise SceneReadError(f"{path}: file not found; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                dtype = src.dtypes[0]
                if dtype not in _SUPPORTED_DTYPES or len(set(src.dtypes)) > 1:
                    raise BandLayoutError(
                        f"{path}: bands of type {sorted(set(src.dtypes))} are not supported; "
                        "convert to uint8, uint16, int16 or float32"
                    )
                colours = palette_colours(src)
                if colours is None:
                    band_indexes, palette = select_bands(path, src.colorinterp, src.descriptions, bands), None
                else:
                    band_indexes, palette = (1,), colours[:, [*palette_components(path, bands), 3]]
                if src.crs is not None:
                    crs, transform = _georeference(path, src)
                    gsd = ground_sample_distance(path, crs, transform, src.width, src.height)
                    if not all(math.isfinite(g) and g > 0 for g in gsd):
                        raise MissingGeoreferenceError(
                            f"{path}: its transform in {crs.name} gives no usable ground sample distance; "
                            "fix the georeference"
                        )
                elif gsd_m is not None:
                    crs, transform, gsd = None, Affine.identity(), (gsd_m, gsd_m)
                elif src.gcps[0]:
                    raise MissingGeoreferenceError(
                        f"{path}: georeferenced by ground control points only, which scoring cannot place "
                        "polygons by; warp it to a grid first (gdalwarp -order 1 IN OUT)"
                    )
                else:
                    raise MissingGeoreferenceError(
                        f"{path}: raster has no CRS, so its ground sample distance is unknown; "
                        "pass --gsd METRES to score it in pixel coordinates"
                    )
                return Scene(
                    path=path,
                    crs=crs,
                    transform=transform,
                    width=src.width,
                    height=src.height,
                    dtype=dtype,
                    gsd_m=gsd,
                    band_indexes=band_indexes,
                    palette=palette,
                    full_scale=None if palette is not None else _full_scale(path, src, band_indexes[0], bit_depth),
                    companions=_companions(path, src.files),
                )
    except RasterioError as exc:
        raise SceneReadError(
            f"{path}: cannot be opened as a raster ({exc}); check that the file is complete"
        ) from None


def _georeference(path: Path, src: rasterio.DatasetReader) -> tuple[CRS, Affine]:
    """The CRS and geotransform of a raster that declares a CRS; one without a geotransform is refused (rasterio
    reads the identity, which would put every polygon near the CRS origin, mirrored)."""
    if src.transform.is_identity:
        raise MissingGeoreferenceError(
            f"{path}: has a CRS ({src.crs}) but no geotransform, so its pixels have no place on the map; fix the "
            "georeference (gdal_edit -a_ullr ...) or remove the CRS and pass --gsd"
        )
    try:
        return CRS.from_user_input(src.crs), src.transform
    except CRSError as exc:
        raise MissingGeoreferenceError(
            f"{path}: its CRS cannot be read ({exc}); assign a real CRS (gdal_edit -a_srs EPSG:...) or remove it "
            "and pass --gsd"
        ) from None


def _companions(path: Path, files: list[str]) -> tuple[Path, ...]:
    """The local files GDAL reads with the raster at ``path`` besides it (not those behind /vsi... paths)."""
    own = path.resolve()
    return tuple(p for p in (Path(f).resolve() for f in files) if p != own and p.is_file())


def _full_scale(path: Path, src: rasterio.DatasetReader, band: int, bit_depth: int | None) -> float | None:
    """The integer value that is full brightness: from ``bit_depth`` when given, else as the raster declares."""
    dtype = np.dtype(src.dtypes[0])
    if bit_depth is None or not np.issubdtype(dtype, np.integer):
        return full_scale(src, band)
    bits = np.iinfo(dtype).bits - np.issubdtype(dtype, np.signedinteger)  # a signed type's sign bit holds no data
    if bit_depth > bits:
        raise BandLayoutError(
            f"{path}: --bit-depth {bit_depth} is more than its {dtype} pixels hold ({bits} bits); "
            "score it without --bit-depth"
        )
    return float(2**bit_depth - 1)


def palette_colours(src: rasterio.DatasetReader) -> np.ndarray | None:
    """The (entries, 4) RGBA lookup of a single-band colour-mapped raster (indexes its colour map lacks are
    transparent), else None."""
    if src.count != 1 or src.colorinterp[0] != ColorInterp.palette:
        return None
    lookup = np.zeros((256 if src.dtypes[0] == "uint8" else 65536, 4), np.uint8)
    for index, rgba in src.colormap(1).items():
        if index < len(lookup):
            lookup[index] = rgba
    return lookup


def expand_palette(indexes: np.ndarray, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour-map ``indexes`` (H, W) through ``lookup`` (entries, C + 1; the last column alpha): the colours as
    (C, H, W) and where they are opaque (H, W)."""
    entries = lookup[indexes]
    return np.moveaxis(entries[..., :-1], -1, 0), entries[..., -1] > 0


def palette_components(path: Path, wanted: list[str]) -> list[int]:
    """Columns of an RGBA palette lookup holding the ``wanted`` bands."""
    rgb = ["red", "green", "blue"]
    missing = [name for name in wanted if name.lower() not in rgb]
    if missing:
        raise BandLayoutError(
            f"{path}: model needs bands {wanted} but the raster is colour-mapped (red, green, blue only) "
            f"and has no {missing[0]!r}; provide a raster with those bands"
        )
    return [rgb.index(name.lower()) for name in wanted]


def select_bands(
    path: Path, colorinterp: tuple[ColorInterp, ...], descriptions: tuple[str | None, ...], wanted: list[str]
) -> tuple[int, ...]:
    """1-based indexes of the ``wanted`` bands, matched by colour interpretation or band description,
    else by position among the non-alpha bands in red, green, blue, nir order."""
    labels = [{ci.name.lower(), (desc or "").lower()} for ci, desc in zip(colorinterp, descriptions)]
    data_bands = [i for i, ci in enumerate(colorinterp, start=1) if ci != ColorInterp.alpha]
    chosen: list[int] = []
    for name in wanted:
        by_label = [i for i, names in enumerate(labels, start=1) if name.lower() in names]
        position = CANONICAL_BAND_ORDER.index(name) if name in CANONICAL_BAND_ORDER else None
        if by_label:
            chosen.append(by_label[0])
        elif position is not None and position < len(data_bands):
            chosen.append(data_bands[position])
        else:
            layout = ", ".join(ci.name for ci in colorinterp)
            raise BandLayoutError(
                f"{path}: model needs bands {wanted} but the raster has {len(colorinterp)} band(s) ({layout}) "
                f"and none fits {name!r}; provide a raster with those bands"
            )
    if len(set(chosen)) != len(chosen):
        raise BandLayoutError(
            f"{path}: bands {wanted} map to repeated source bands {chosen}; label the bands"
        )
    return tuple(chosen)


def ground_sample_distance(path: Path, crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground metres per pixel along x and y of the raster at ``path``, measured on the ellipsoid across the middle
    of the scene.

    Measured geodesically rather than read from the transform so that degrees (EPSG:4326) and
    Web Mercator (whose 'metres' stretch with latitude) give true ground distances.
    """
    try:
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    except ProjError as exc:
        raise MissingGeoreferenceError(
            f"{path}: its CRS {crs.name!r} cannot be related to longitude and latitude ({exc}); assign a real CRS "
            "(gdal_edit -a_srs EPSG:...) or remove it and pass --gsd"
        ) from None
    cols = np.array([0.0, width, width / 2, width / 2])
    rows = np.array([height / 2, height / 2, 0.0, height])
    xs, ys = transform @ (cols, rows)
    lon, lat = to_lonlat.transform(xs, ys)
    _, _, across = GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, down = GEOD.inv(lon[2], lat[2], lon[3], lat[3])
    return across / width, down / height
