"""Writing results: panel layers (GeoJSON RFC 7946, GeoPackage, GeoParquet) and the per-image CSV, atomically."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from pipelines.errors import ScoringConfigError
from pipelines.scoring.attributes import COLUMNS
from pipelines.timing import timed

OUTPUT_CRS = "EPSG:4326"
_WRITERS: dict[str, Callable[[gpd.GeoDataFrame, Path, str], None]] = {
    ".geojson": lambda frame, path, layer: frame.to_file(
        path,
        driver="GeoJSON",
        layer=layer,
        engine="pyogrio",
        geometry_type="Polygon",
        layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": "7"},
    ),
    ".gpkg": lambda frame, path, layer: frame.to_file(
        path, driver="GPKG", layer=layer, engine="pyogrio", geometry_type="Polygon"
    ),
    ".parquet": lambda frame, path, layer: frame.to_parquet(path, index=False),
}


def check_output_path(out: Path) -> None:
    """Reject an output whose extension names no supported format."""
    if out.suffix.lower() not in _WRITERS:
        raise ScoringConfigError(
            f"{out}: unsupported output format {out.suffix!r}; use one of {', '.join(sorted(_WRITERS))}"
        )


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only when the block completes; its own for each call, so
    threads writing the same file at once each replace it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def combine(panel_sets: Iterable[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Georeferenced panel sets in lon/lat with counter-clockwise exteriors, numbered 1..N across the batch."""
    frames = [p.to_crs(OUTPUT_CRS) for p in panel_sets if p.crs is not None and len(p)]
    if frames:
        panels = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=OUTPUT_CRS)
    else:
        panels = gpd.GeoDataFrame({c: [] for c in COLUMNS}, geometry=gpd.GeoSeries([], crs=OUTPUT_CRS))
        text = {"source": "str", "model": "str"}
        panels = panels.astype({c: "float64" for c in COLUMNS if c not in text} | text | {"panel_id": "int64"})
    panels["panel_id"] = range(1, len(panels) + 1)
    panels.geometry = shapely.orient_polygons(panels.geometry.to_numpy(), exterior_cw=False)
    return panels


@timed("write")
def write_panels(panels: gpd.GeoDataFrame, out: Path) -> None:
    """Write ``panels`` in the format named by ``out``'s extension, never leaving a half-written file."""
    check_output_path(out)
    with atomic_path(out) as partial:
        _WRITERS[out.suffix.lower()](panels, partial, out.stem)


def write_tiles_csv(rows: Iterable[tuple[str, float, bool]], path: Path) -> None:
    """One row per input image: path, panel_probability, has_panels."""
    with atomic_path(path) as partial, partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "panel_probability", "has_panels"])
        for source, probability, has_panels in rows:
            writer.writerow([source, f"{probability:.6f}", str(has_panels).lower()])
