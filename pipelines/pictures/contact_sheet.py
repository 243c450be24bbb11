"""A picture of a scoring result: each input image with its detected panels outlined."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from matplotlib.figure import Figure
from rasterio.enums import Resampling
from shapely import get_coordinates

from data_catalog.rasters import open_raster
from pipelines.scenes import expand_palette, palette_colours
from pipelines.scoring.export import atomic_path
from pipelines.scoring.vectorising import panel_pixels

DISPLAY_PX = 256  # longest side of each thumbnail


def _thumbnail(path: Path, display_px: int = DISPLAY_PX) -> tuple[np.ndarray, float, rasterio.Affine | None, object]:
    """RGB thumbnail (H, W, 3) in [0, 1] of at most ``display_px`` a side, its scale from source pixels, the source
    transform and CRS."""
    with open_raster(path) as src:
        scale = min(1.0, display_px / max(src.width, src.height))
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        colours = palette_colours(src)
        if colours is not None:
            colour, _ = expand_palette(src.read(1, out_shape=shape, resampling=Resampling.nearest), colours)
            pixels = colour.astype(np.float32)
        else:
            bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
            pixels = src.read(bands, out_shape=(3, *shape), resampling=Resampling.average).astype(np.float32)
        transform = src.transform if src.crs is not None else None
        crs = src.crs
    low, high = np.percentile(pixels, [1, 99])
    rgb = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1)
    return np.moveaxis(rgb, 0, -1), scale, transform, crs


def render_contact_sheet(
    images: list[Path],
    panels: gpd.GeoDataFrame,
    out: Path,
    tile_probabilities: dict[str, float] | None = None,
    masks_dir: Path | None = None,
    threshold: float = 0.5,
    caption: str = "",
    columns: int = 5,
    display_px: int = DISPLAY_PX,
    known: dict[str, list[tuple[int, int, int, int]]] | None = None,
) -> Path:
    """Write a PNG grid: every image, its panel polygons (or, without a georeference, its mask outline) and, dashed,
    the places ``known`` to hold panels (source pixel boxes row0, col0, row1, col1 per image path)."""
    rows = max(1, math.ceil(len(images) / columns))
    inches = 3 * display_px / DISPLAY_PX
    fig = Figure(figsize=(inches * columns, (inches + 0.2) * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path in zip(axes.flat, images):
        rgb, scale, transform, crs = _thumbnail(path, display_px)
        ax.imshow(rgb)
        for r0, c0, r1, c1 in (known or {}).get(str(path), []):
            ax.plot(np.array([c0, c1, c1, c0, c0]) * scale - 0.5, np.array([r0, r0, r1, r1, r0]) * scale - 0.5,
                    color="#ffd500", lw=1.2, ls="--")
        mine = panels[panels["source"] == str(path)] if len(panels) else panels
        if transform is not None and len(mine):
            a, b, c, d, e, f = (~transform)[:6]
            for geometry in mine.to_crs(crs).geometry:
                for polygon in getattr(geometry, "geoms", [geometry]):
                    x, y = get_coordinates(polygon.exterior).T
                    cols, rows_ = a * x + b * y + c, d * x + e * y + f
                    ax.plot(cols * scale - 0.5, rows_ * scale - 0.5, color="#ff2d2d", lw=1.5)
        elif transform is None and masks_dir is not None and (masks_dir / f"{path.stem}.png").exists():
            with open_raster(masks_dir / f"{path.stem}.png") as src:
                mask = src.read(1, out_shape=rgb.shape[:2], resampling=Resampling.bilinear)
            if panel_pixels(mask, threshold).any():
                ax.contour(mask, levels=[threshold * 255], colors="#ff2d2d", linewidths=1.5)
        probability = (tile_probabilities or {}).get(str(path))
        title = path.name if probability is None else f"{path.name}\npanel probability {probability:.2f}"
        ax.set_title(title, fontsize=8)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
    with atomic_path(out) as partial:
        fig.savefig(partial, dpi=110, format="png")
    return out
